"""Schedule for `rq cron workers.cron --url $REDIS_URL`: the tick every five minutes.

The tick is idempotent and decides from the database alone, so a second cron process or a
restart that fires it early sends nothing twice (rq's cron keeps no lock of its own).
"""

from rq.cron import register

from app.jobs import QUEUE_NAME
from workers.jobs import tick

register(tick, queue_name=QUEUE_NAME, interval=300, job_timeout=600)
