"""Segments: condition trees compiled to SQL, real-time membership, overlap, exports."""
