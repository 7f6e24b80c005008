"""Rendering planned sessions as Segment messages from the mobile app.

App messages carry ``context.device.id`` next to the install's
``anonymousId``. Logins stick (people stay logged in on their phone), so
app data is better identified than web data -- except on the few devices
a household shares, where the device id is tied to two userIds.
"""

from __future__ import annotations

from .people import Person
from .sessions import Device, Session
from .web import Renderer, mobile_ip, segment_message, traits_of

APP_NAME = "Klantbeeld Shop"


def render_app(r: Renderer, s: Session) -> None:
    py, actor = r.py, s.actor
    d: Device = s.surface
    uid_now = actor.user_id if isinstance(actor, Person) and actor.account_at is not None \
        and actor.account_at <= s.ts else ""
    switching = bool(d.user and d.user != uid_now)
    if switching:
        # shared device: the previous user logged out; this person logs in
        # as themselves below, so every userId on the device is truthful
        d.user = ""
    ip = actor.home_ip if py.random() < 0.6 else mobile_ip(py)
    context = {
        "app": {"name": APP_NAME, "version": d.app_version,
                "build": d.app_version.replace(".", "")},
        "device": {"id": d.device_id, "manufacturer": d.manufacturer,
                   "model": d.model, "type": d.os_name.lower()},
        "os": {"name": d.os_name, "version": d.os_version},
        "ip": ip,
        "network": {"wifi": ip == actor.home_ip},
    }
    clock = [s.ts * 1000 + py.randrange(1000)]
    push = r.app.push

    def emit(kind: str, label: str | None, payload: dict) -> None:
        clock[0] += 1000 + int(py.expovariate(1 / 20000))
        msg = segment_message(py, kind, label, payload, d.anon, d.user, clock[0], context)
        push(clock[0], msg, actor.pid)

    def screen(name: str, path: str, title: str, props: dict) -> None:
        emit("screen", name, props)

    def identify(uid: str) -> None:
        d.user = uid
        emit("identify", None, traits_of(actor))

    emit("track", "Application Opened",
         {"from_background": py.random() < 0.4, "version": d.app_version})
    if switching and uid_now:
        identify(uid_now)
    r.flow(s, screen, emit, identify, lambda: d.user, web=False)
