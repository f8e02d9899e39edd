"""The training supervisor: one detached process per training job that runs and watches its ranks.

It launches the ranks the way ``torchrun`` does (:class:`~kfjupyter.runtime.ranks.RankGroup`:
RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT … in the environment, each rank's
output in its own log file, the rendezvous store on loopback only) and writes the job's
status to the workspace store:

* every rank exits 0 → Succeeded;
* a rank fails → the others are stopped at once and the job is Failed, its error the
  failing rank's traceback (no hang waiting on a dead peer);
* SIGTERM (cancel) → every rank is stopped (SIGTERM, then SIGKILL after a grace
  period), with whatever it started, and the job is Cancelled.

Usage: ``python -m kfjupyter.training.supervisor JOB_DIR`` (reads JOB_DIR/launch.json).
"""

from __future__ import annotations

import time

from .. import status as st
from ..runtime.ranks import RankGroup
from ..runtime.supervisor import Supervisor

POLL_S = 0.05


class TrainSupervisor(Supervisor):
    what = "the kfjupyter training supervisor"

    def __init__(self, job_dir):
        super().__init__(job_dir)
        launch = self.launch
        self.ranks = RankGroup(
            self.job_dir, run_id=self.job_id, job_id=self.job_id, workers=launch["workers"],
            bundle=self.job_dir / "bundle", groups_dir=self.job_dir, env=launch["env"],
            gpus=launch.get("gpus") or 0, threads=launch.get("threads"), workdir=launch.get("workdir"),
        )  # fmt: skip

    def before_threads(self) -> None:
        self.ranks.start()  # forks of this warm process when it may (before the tracker's thread)
        if self.ranks.forked:
            print("ranks forked from the warm supervisor (torch loaded)", flush=True)

    def run(self) -> None:
        self.set_status(st.RUNNING)
        while True:
            if self.cancelled:
                self.ranks.stop()
                self.set_status(st.CANCELLED, message="cancelled by the user")
                return
            outcome, failure = self.ranks.outcome()
            if outcome == "failed":
                self.ranks.stop()
                self.set_status(st.FAILED, error=self.ranks.failure_text(*failure))
                return
            if outcome == "succeeded":
                self.set_status(st.SUCCEEDED)
                return
            time.sleep(POLL_S)

    def stop(self) -> None:
        self.ranks.stop()
        super().stop()


main = TrainSupervisor.main

if __name__ == "__main__":
    main()
