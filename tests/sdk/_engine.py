"""Which engine an SDK script runs against, for the few places where berth differs from
Docker 20.10 on purpose or where Docker 20.10 has a defect berth does not copy. Each use
names the difference; docs/TESTING.md ("Against Docker") lists them all.

scripts/against-docker.sh sets BERTH_TEST_ENGINE=docker; berth's test harness leaves it
unset (berth).
"""
import os

ENGINE = os.environ.get("BERTH_TEST_ENGINE", "berth")
ON_DOCKER = ENGINE == "docker"
