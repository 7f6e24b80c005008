-- `corrections` counts changes to the identity graph that real-time steps do not describe (a
-- rebuild, a manual merge): segments compare it with `segments_corrections` to know when a full
-- refresh is due. `version` alone moves on every resolver step (so processes reload their graph)
-- and cannot tell the two apart. A store whose segments were behind its graph stays due.
INSERT INTO identity_state
SELECT 'corrections', 0
UNION ALL
SELECT 'segments_corrections',
       CASE WHEN (SELECT value FROM identity_state WHERE name = 'version')
                 = (SELECT value FROM identity_state WHERE name = 'segments_version')
            THEN 0 ELSE -1 END;
