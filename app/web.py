"""The web app: the inbound webhooks and a health check. `create_app` wires everything once."""

from __future__ import annotations

import logging
from urllib.parse import quote

from flask import Flask, Response, jsonify, request
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app import clock, db, jobs, mail, packets
from app.cycles import excuse
from app.delivery import blueprint as delivery_blueprint
from app.inbound import blueprint as inbound_blueprint
from app.models import StoredAttachment, UpdateRequest
from app.settings import Settings, configure, current_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, check_schema: bool = True) -> Flask:
    """Build the Flask app; refuses to start on a database that is not migrated."""
    settings = settings or current_settings()
    configure(settings)
    if check_schema:
        db.check_migrated(settings.database_url)
    app = Flask(__name__)
    app.config.update(
        # No SECRET_KEY: nothing uses Flask's cookie session (unsubscribe links are signed with
        # settings.secret_key), and without one Flask does not open a session per request.
        ROUNDTABLE_SETTINGS=settings,
        ROUNDTABLE_SESSIONS=db.sessionmaker_for(settings.database_url, settings.database_timeout_s),
        # SendGrid posts up to 30 MB and drops mail it gets a 4xx for: never 413 below that.
        MAX_CONTENT_LENGTH=settings.max_inbound_bytes,
        MAX_FORM_MEMORY_SIZE=settings.max_inbound_bytes,
        MAX_FORM_PARTS=10_000,
    )
    app.register_blueprint(inbound_blueprint)
    app.register_blueprint(delivery_blueprint)

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def database_unavailable(error: Exception) -> Response:
        """The database is down or did not answer within DATABASE_TIMEOUT: SendGrid retries a
        5xx (the Event Webhook for a day), and a person can try the link again."""
        log.error("database unavailable: %s", error)
        return Response("the database is unavailable, try again later\n", 503, {"Retry-After": "60"})

    @app.route("/unsubscribe/<signed>", methods=["GET", "POST"])
    def unsubscribe(signed: str) -> tuple[str, int]:
        """RFC 8058 one-click (POST) and a confirm page (GET): no more reminders this cycle."""
        token = mail.read_unsubscribe_token(settings, signed)
        if token is None:
            return "This link is not valid.", 404
        if request.method == "GET":
            return (
                "<!doctype html><meta charset=utf-8><title>Roundtable</title>"
                "<form method=post><p>Stop this month's reminders?</p>"
                "<button type=submit>Yes, no more reminders this month</button></form>",
                200,
            )
        with app.config["ROUNDTABLE_SESSIONS"]() as session:
            update_request = session.scalar(select(UpdateRequest).where(UpdateRequest.token == token))
            if update_request is None:
                return "This link is no longer valid.", 404
            excuse(session, update_request, clock.now())
            session.commit()
        return "Done: no more reminders this month. Your facilitator will see you as excused.", 200

    @app.get("/files/<signed>")
    def packet_file(signed: str) -> Response:
        """A file a member sent, from the signed, expiring link in the packet email."""
        attachment_id = packets.read_file_link(settings, signed)
        if attachment_id == "expired":
            return Response("This link has expired: ask your facilitator for the file.\n", 410, mimetype="text/plain")
        if not isinstance(attachment_id, int):
            return Response("This link is not valid.\n", 404, mimetype="text/plain")
        with app.config["ROUNDTABLE_SESSIONS"]() as session:
            stored = session.get(StoredAttachment, attachment_id)
            if stored is None or stored.data is None:
                return Response("This file is no longer kept.\n", 404, mimetype="text/plain")
            # Member files are untrusted: always a download, never rendered on our origin.
            response = Response(stored.data, 200, mimetype="application/octet-stream")
            response.headers["Content-Disposition"] = _download_disposition(stored.filename)
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
            response.headers["Cache-Control"] = "private, no-store"
            return response

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        database_ok = True
        try:
            with db.engine_for(settings.database_url, settings.database_timeout_s).connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            database_ok = False
        redis_ok = jobs.redis_ok(settings)
        healthy = database_ok and redis_ok is not False
        body = {
            "status": "ok" if healthy else "degraded",
            "database": "ok" if database_ok else "unreachable",
            "redis": {None: "not configured (jobs run in-process)", True: "ok", False: "unreachable"}[redis_ok],
        }
        return jsonify(body), 200 if healthy else 503

    return app


def _download_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the real one in RFC 5987 form."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename) or "file"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
