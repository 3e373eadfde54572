"""What a real TensorBoard server's HParams dashboard shows for a search's log folder.

    python scripts/tensorboard_hparams.py results/small-digits/tensorboard

Starts ``tensorboard --logdir`` on a free local port, asks its HParams plugin what the
dashboard asks (the experiment, then every session group), prints the columns, the number of
sessions and the best one's hyperparameters and metrics, and stops the server.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())


def query(base: str) -> tuple[dict, list]:
    experiment = post(f"{base}/experiment", {"experimentName": ""})
    cols = [{"hparam": h["name"]} for h in experiment.get("hparamInfos", [])]
    cols += [{"metric": m["name"]} for m in experiment.get("metricInfos", [])]
    groups = post(f"{base}/session_groups", {
        "experimentName": "", "colParams": cols, "startIndex": 0, "sliceSize": 1_000_000,
        "allowedStatuses": ["STATUS_FAILURE", "STATUS_RUNNING", "STATUS_SUCCESS", "STATUS_UNKNOWN"]})
    return experiment, groups.get("sessionGroups", [])


def main() -> int:
    logdir = sys.argv[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}/data/plugin/hparams"
    log = tempfile.TemporaryFile("w+")
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1",
                               "--port", str(port)], stdout=log, stderr=log)
    try:
        deadline, groups = time.monotonic() + 120, []
        while not groups and time.monotonic() < deadline and server.poll() is None:
            time.sleep(1)
            try:
                experiment, groups = query(base)
            except (urllib.error.URLError, ConnectionError):
                continue
    finally:
        server.terminate()
        server.wait(timeout=30)
    if not groups:
        log.seek(0)
        print("no HParams sessions shown\n" + log.read()[-2000:])
        return 1

    def score(group):
        values = {(m["name"].get("group", ""), m["name"]["tag"]): m["value"] for m in group["metricValues"]}
        return values.get(("", "best_val_accuracy"), 0.0), values

    best = max(groups, key=lambda g: score(g)[0])
    print(f"TensorBoard {port}: {len(groups)} sessions; hyperparameter columns: "
          f"{', '.join(sorted(h['name'] for h in experiment['hparamInfos']))}")
    metrics = ("/".join(filter(None, (m["name"].get("group"), m["name"]["tag"]))) for m in experiment["metricInfos"])
    print(f"metrics: {', '.join(metrics)}")
    print(f"best session {best['name']}: {json.dumps(best['hparams'])}")
    print(f"its metrics: {json.dumps({'/'.join(filter(None, k)): round(v, 4) for k, v in score(best)[1].items()})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
