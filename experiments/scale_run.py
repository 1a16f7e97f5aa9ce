"""One long run.py run, measured from outside: images/s end to end, peak RSS, and the RSS sampled
every N images (is memory flat over the run?).

    python experiments/scale_run.py --every 100 -- dataset=duts_te dataset.root=/data/DUTS-TE

Everything after `--` goes to run.py. Writes scale.json and scale.md into the run's own directory
(outputs/scale/<date>_<time>/, or --out). RSS is that of run.py's process and its children
(DataLoader workers), read from /proc while it runs (Linux); the peak is the kernel's VmHWM.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB of ``pid`` plus its children's current RSS."""
    def field(p, name):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(name + ":"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass
    return field(pid, "VmRSS") + sum(field(c, "VmRSS") for c in children), field(pid, "VmHWM")


def rows_done(csv: Path) -> int:
    try:
        return max(0, csv.read_bytes().count(b"\n") - 1)
    except OSError:
        return 0


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=100, help="sample RSS every N images (default 100)")
    parser.add_argument("--out", type=Path, help="run directory (default outputs/scale/<date>_<time>)")
    parser.add_argument("overrides", nargs="*", help="run.py overrides (after --)")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "outputs" / "scale" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    command = [sys.executable, str(ROOT / "run.py"), *args.overrides, f"hydra.run.dir={out}"]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples, peak, next_at = [], 0.0, args.every
    while proc.poll() is None:
        n = rows_done(out / "results.csv")
        rss, hwm = rss_mib(proc.pid)
        peak = max(peak, hwm)
        if n >= next_at:
            samples.append({"images": n, "seconds": round(time.perf_counter() - start, 1), "rss_mib": round(rss, 1)})
            next_at = (n // args.every + 1) * args.every
        time.sleep(0.5)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"run.py exited with {proc.returncode}:\n{proc.stderr.read()[-3000:]}")
    n = rows_done(out / "results.csv")
    summary = json.loads((out / "summary.json").read_text())
    rss = [s["rss_mib"] for s in samples]
    result = {"command": " ".join(command[1:]), "images": n, "wall_s": round(wall, 1),
              "images_per_s": round(n / wall, 3), "peak_rss_mib": round(peak, 1), "samples": samples,
              "rss_growth_mib_after_first_sample": round(max(rss) - rss[0], 1) if rss else None,
              "summary": summary}
    (out / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"`{result['command']}`", "", f"{n} images in {wall:.0f} s: {n / wall:.2f} images/s end to end "
             f"(model load included); peak RSS {peak:.0f} MiB.", "", "| images | s | RSS (MiB) |", "|---:|---:|---:|"]
    lines += [f"| {s['images']} | {s['seconds']:.0f} | {s['rss_mib']:.0f} |" for s in samples]
    (out / "scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
