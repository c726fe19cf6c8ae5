"""Engine server benchmark: in-process vs loopback, concurrency, streaming, clicks during answers.

    python bench/server.py [--prompts 30] [--per-client 20] [--tokens 200]

Starts `medplib-studio serve --engine both` on 127.0.0.1 (LiteMedSAM, and a tiny random MedPLIB
checkpoint written to a temporary folder, on the CPU) and measures, in one run:

1. click -> mask and box -> mask latency: LiteMedSAM in this process vs through the server
   (same slice, already encoded on both sides; medians and their ratio);
2. throughput and p50/p95 latency of box prompts with 1, 4 and 8 concurrent clients;
3. time to first token and streamed tokens/s of a chat answer (tiny model, ``ignore_eos``);
4. a click's latency while another client's long answer streams, next to the idle latency.

Absolute numbers depend on the machine (note how busy it was); ratios within a run are the
comparable part. Backends: whatever LiteMedSAM picks here (printed), PyTorch for MedPLIB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medplib_core.engines.base import Prompt  # noqa: E402
from medplib_core.engines.remote import RemoteEngine  # noqa: E402
from medplib_core.errors import CancelledError  # noqa: E402

TOKEN = "bench-token"


def start_server(tiny: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDPLIB_SERVER_TOKEN=TOKEN, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "medplib_core.cli.main", "serve", "--port", "0", "--engine", "both",
           "--checkpoint", str(tiny / "tiny-medplib"), "--clip", str(tiny / "tiny-clip"),
           "--sam", str(tiny / "tiny-sam-med2d.pth"), "--device", "cpu", "--client-inflight", "64"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        print("  server:", line.rstrip(), file=sys.stderr)
        if line.startswith("listening on "):
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, line.split()[-1]
    raise SystemExit("the server did not start")


def ct_slice() -> np.ndarray:
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return np.clip((hu + 160) * 255.0 / 400.0, 0, 255).astype(np.uint8)


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def local_vs_remote(url: str, image: np.ndarray, n: int) -> list[str]:
    from medplib_core.engines.litemedsam import LiteMedSAMEngine

    from concurrent.futures import ThreadPoolExecutor

    local = LiteMedSAMEngine()
    remote = RemoteEngine(url, token=TOKEN)
    ls, rs = local.encode(image), remote.encode(image)
    worker = ThreadPoolExecutor(1)  # in-process prompts run on a worker thread, as in the GUI
    # (measured here: the same predict on the main thread was ~1.4x slower on this machine)
    rows = [f"backends: {local.info.device}"]
    rows.append("| prompt | in-process median ms | loopback median ms | ratio | server-side compute ms "
                "| transport + queue ms |")
    rows.append("|---|---|---|---|---|---|")
    click, box = Prompt(points=[(64, 64)], point_labels=[1]), Prompt(box=(20, 15, 110, 115))
    for name, p in (("click", click), ("box", box)):
        ls.predict(p), rs.predict(p)  # warm both
        a, b, inside = [], [], []
        for _ in range(n):  # interleaved, so both see the same machine load
            a += timed(lambda: worker.submit(ls.predict, p).result(), 1)
            t = time.perf_counter()
            res = rs.predict(p)
            b.append((time.perf_counter() - t) * 1000.0)
            inside.append(float(res.provenance["latency_ms"]))
        ma, mb = statistics.median(a), statistics.median(b)
        over = statistics.median(x - y for x, y in zip(b, inside))
        rows.append(f"| {name} | {ma:.1f} | {mb:.1f} | {mb / ma:.2f} | {statistics.median(inside):.1f} | {over:.1f} |")
    t_enc_local = timed(lambda: worker.submit(local.encode, np.ascontiguousarray(image[::-1])).result(), 1)[0]
    t_enc_remote = timed(lambda: remote.encode(np.ascontiguousarray(image[:, ::-1])), 1)[0]
    rows.append(f"| encode a new slice (once) | {t_enc_local:.0f} | {t_enc_remote:.0f} (upload + encode) | "
                f"{t_enc_remote / t_enc_local:.2f} |")
    worker.shutdown()
    local.close()
    remote.close()
    return rows


def concurrency(url: str, image: np.ndarray, per_client: int) -> list[str]:
    rows = ["| clients | prompts/s | p50 ms | p95 ms |", "|---|---|---|---|"]
    RemoteEngine(url, token=TOKEN).encode(image)
    for clients in (1, 4, 8):
        lat: list[float] = []
        lock = threading.Lock()
        sessions = [RemoteEngine(url, token=TOKEN).encode(image) for _ in range(clients)]

        def run(sess, seed):
            rng = np.random.default_rng(seed)
            mine = []
            for _ in range(per_client):
                x0, y0 = rng.uniform(5, 40, 2)
                p = Prompt(box=(x0, y0, x0 + 60, y0 + 60))
                mine += timed(lambda: sess.predict(p), 1)
            with lock:
                lat.extend(mine)

        threads = [threading.Thread(target=run, args=(s, i)) for i, s in enumerate(sessions)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        rows.append(f"| {clients} | {len(lat) / wall:.1f} | {pct(lat, 50):.0f} | {pct(lat, 95):.0f} |")
    return rows


def stream_once(chat, tokens: int, question: str = "Describe the image.") -> tuple[float, float, int]:
    stamps: list[float] = []
    t0 = time.perf_counter()
    chat.ask(question, on_token=lambda d: stamps.append(time.perf_counter()),
             generation={"max_new_tokens": tokens, "ignore_eos": True})
    ttft = (stamps[0] - t0) * 1000.0
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
    return ttft, rate, len(stamps)


def streaming(url: str, image: np.ndarray, tokens: int) -> list[str]:
    eng = RemoteEngine(url, engine="medplib", token=TOKEN)
    sess = eng.encode(image)
    sess.chat().ask("Warm up.", generation={"max_new_tokens": 4})
    runs = [stream_once(sess.chat(), tokens) for _ in range(3)]
    eng.close()
    ttft = statistics.median(r[0] for r in runs)
    rate = statistics.median(r[1] for r in runs)
    return ["| answer | time to first token ms | streamed tokens/s | deltas |", "|---|---|---|---|",
            f"| tiny MedPLIB, CPU, {tokens} tokens (median of 3) | {ttft:.0f} | {rate:.0f} | {runs[0][2]} |"]


def click_during_answer(url: str, image: np.ndarray, n: int) -> list[str]:
    seg = RemoteEngine(url, token=TOKEN).encode(image)
    click = Prompt(points=[(64, 64)], point_labels=[1])
    seg.predict(click)
    idle = timed(lambda: seg.predict(click), n)
    eng = RemoteEngine(url, engine="medplib", token=TOKEN)
    chat = eng.encode(image).chat()
    streamed: list[float] = []
    done = threading.Event()

    def answer():
        try:
            chat.ask("Describe everything.", on_token=lambda d: streamed.append(time.perf_counter()),
                     generation={"max_new_tokens": 4000, "ignore_eos": True}, cancel=done.is_set)
        except CancelledError:
            pass  # stopped once the clicks were measured

    t = threading.Thread(target=answer)
    t.start()
    while not streamed:
        time.sleep(0.01)
    busy = timed(lambda: seg.predict(click), n)
    done.set()
    t.join()
    rate = (len(streamed) - 1) / (streamed[-1] - streamed[0])
    return ["| click -> mask | median ms | p95 ms |", "|---|---|---|",
            f"| idle server | {statistics.median(idle):.0f} | {pct(idle, 95):.0f} |",
            f"| while a 4000-token answer streams ({rate:.0f} tokens/s overall) | "
            f"{statistics.median(busy):.0f} | {pct(busy, 95):.0f} |",
            f"ratio busy/idle (median): {statistics.median(busy) / statistics.median(idle):.2f}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=30, help="repetitions per latency measurement")
    ap.add_argument("--per-client", type=int, default=20, help="prompts per client in the concurrency test")
    ap.add_argument("--tokens", type=int, default=200, help="answer length for the streaming test")
    args = ap.parse_args()
    image = ct_slice()
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        from medplib_core.medplib.tiny import make_tiny

        make_tiny(tmp)
        proc, url = start_server(Path(tmp))
        try:
            print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
            print("## LiteMedSAM: in this process vs through the server on loopback")
            print("\n".join(local_vs_remote(url, image, args.prompts)), "\n")
            print("## Concurrent clients (box prompts, one encoded slice)")
            print("\n".join(concurrency(url, image, args.per_client)), "\n")
            print("## Streaming a chat answer")
            print("\n".join(streaming(url, image, args.tokens)), "\n")
            print("## A click while another client's long answer streams")
            print("\n".join(click_during_answer(url, image, args.prompts)))
            print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
        finally:
            proc.terminate()
            proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
