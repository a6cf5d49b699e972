"""Fuzz test of the web apps (``-m fuzz``, run by .ci/run).

A seeded ``gradio_client`` sends a few hundred malformed or hostile inputs to every endpoint
the hub's API lists (every app's tab): option-like and path-traversal strings, huge and zero
numbers, wrong types, NaN audio, decompression-bomb PNGs, playlist "audio", forged file
references and select events, many requests at once. Each must be answered with a result or
a one-line error, no upload that must be refused may give a result, the server keeps serving,
and no file appears outside the app's folders (its gradio upload cache, its scratch folder
``$TMPDIR/lorakit-demo`` and the CLIP example set under the runs folder). The counts are
printed and written to ``demos/results/fuzz_counts.json``.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import uuid
import zlib
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

pytestmark = pytest.mark.fuzz
SEED = 22
ROUNDS = 12  # random argument draws per endpoint that takes arguments
SECRET = "lorakit-fuzz-secret-7f3a"
REPO = Path(__file__).resolve().parents[2]
COUNTS = REPO / "demos" / "results" / "fuzz_counts.json"
# uploads no endpoint may accept (a result from a call carrying one is a failure)
MUST_REFUSE = {"bomb.png", "wide.png", "tiny.png", "silent.wav", "text.png", "empty.png", "trunc.png", "big.png",
               "evil.svg", "anim.gif", "nan.wav", "inf.wav", "long.wav", "long.ogg",
               "empty.wav", "hls.mp3", "concat.ogg"}  # fmt: skip


def bomb_png(path: Path, side: int = 12000) -> Path:
    """A 1-bit ``side`` x ``side`` PNG of zeros: ~17 KB on disk, 144 M pixels decoded."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    path.write_bytes(png)
    return path


def make_files(folder: Path, secret: Path) -> dict[str, Path]:
    """The uploads a hostile client sends (small on disk; some huge once decoded)."""
    f = {n: folder / n for n in ("ok.png", "ok.jpg", "max.png", "text.png", "empty.png",
                                  "trunc.png", "big.png", "evil.svg", "anim.gif", "empty.wav",
                                  "hls.mp3", "concat.ogg")}  # fmt: skip
    grad = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    Image.fromarray(grad).save(f["ok.png"])
    Image.fromarray(grad).save(f["ok.jpg"])
    Image.new("RGB", (4096, 4096), (90, 20, 200)).save(f["max.png"])  # at the limit
    f["bomb.png"], f["wide.png"] = bomb_png(folder / "bomb.png"), bomb_png(folder / "wide.png", 5000)
    f["tiny.png"], f["grey.png"] = folder / "tiny.png", folder / "grey.png"
    Image.new("RGB", (8, 8)).save(f["tiny.png"])
    Image.fromarray(grad[..., 0]).save(f["grey.png"])  # mode L: gradio passes it undecoded
    f["text.png"].write_text("not an image")
    f["empty.png"].write_bytes(b"")
    f["trunc.png"].write_bytes(f["ok.png"].read_bytes()[:200])
    f["big.png"].write_bytes(os.urandom(11 * 2**20))  # over the 10 MB upload limit
    f["evil.svg"].write_text('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>')
    Image.new("P", (32, 32)).save(f["anim.gif"])
    tone = (0.3 * np.sin(np.arange(16000) / 4)).astype(np.float32)
    nan, inf = tone.copy(), tone.copy()
    nan[9], inf[9] = np.nan, np.inf
    for name, data, rate, sub in (
        ("ok.wav", tone, 16000, None),
        ("nan.wav", nan, 16000, "FLOAT"),
        ("inf.wav", inf, 16000, "FLOAT"),
        ("long.wav", np.zeros(8000 * 40, np.int16), 8000, "PCM_U8"),  # 40 s, 320 KB
        ("long.ogg", np.tile(tone, 40), 16000, None),  # 40 s through ffmpeg
        ("rate.wav", tone, 192000, None),
        ("six.wav", np.tile(tone[:1600, None], (1, 6)), 16000, None),
        ("silent.wav", np.zeros(16000, np.float32), 16000, None),
        ("max.wav", np.tile(tone, 30), 16000, "FLOAT"),  # at the limit
        ("-f.wav", tone, 16000, None),
    ):
        f[name] = folder / name
        sf.write(f[name], data, rate, subtype=sub)
    f["empty.wav"].write_bytes(b"")
    f["hls.mp3"].write_text(
        f"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\nfile://{secret}\n#EXT-X-ENDLIST\n"
    )
    f["concat.ogg"].write_text(f"ffconcat version 1.0\nfile '{secret}'\n")
    return f


def strings(ctx: dict) -> list:
    """Text values: option-like, traversal out of the runs root, odd encodings, huge."""
    root, out, secret = ctx["root"], ctx["outside"], ctx["secret"]
    return [
        f"-f{secret}", f"--compile={out}", "-w/tmp/x.wav", f"--stdin -f {secret}",
        str(out / "clip-block_lora"), f"{root}/../{out.name}/clip-block_lora",
        str(root / "escape"), str(root / "clip-block_lora" / "adapter"), str(root / "data"),
        "../../../../etc/passwd", "/etc/passwd", "/proc/self/environ", "~", "~root",
        "clip-block_lora", "ood-largo", str(root), "", " ", "x" * 100_000, "a\x00b",
        "\u202e\u0000", "😀" * 60, "$(id) `id`; rm -rf /",
        "<script>alert(1)</script>", "%s%n{0}{{7*7}}", "1 2 3 4", "0, 0, 5, 5",
        "nan nan nan nan", "-1 -1 1e308 1e308", "the teacher found a red ball",
    ]  # fmt: skip


# gradio_client's JSON has no NaN: NaN and infinity go as text here, as numbers in raw_cases
NUMBERS = [-1, 0, 1, 4, 3.5, 1e9, 1e308, -1e308, 10**30, "nan", "inf", "abc", None, True]
WRONG = [None, 5, ["a", "b"], {"path": "/etc/passwd"}, True, 1.5]


def pools(params: list, ctx: dict) -> list[list]:
    """For each parameter of an endpoint, the values to draw from (its default included, so
    some draws are valid requests that reach the models)."""
    from gradio_client import handle_file

    out = []
    files = {n: handle_file(str(p)) for n, p in ctx["files"].items()}
    for p in params:
        comp, kind = p["component"], p["python_type"]["type"]
        default = [p["parameter_default"]] if p.get("parameter_has_default") else []
        if comp in ("File", "Image", "Audio"):
            one = list(files.values())
            if kind.startswith("list"):
                ok = files["ok.png"]
                out.append([[x] for x in one] + [[ok] * 20, [ok, ok], [], None, "x"])
            else:
                out.append(one + [None, "x", 5])
        elif comp in ("Number", "Slider"):
            out.append(NUMBERS + default)
        elif comp in ("Radio", "Dropdown"):
            choices = [c[0] if isinstance(c, list) else c for c in p.get("choices") or []]
            out.append(choices[:3] + ["../../etc/passwd", "", None, 5, ["lora"], "a; rm -rf /"])
        elif comp == "Checkbox":
            out.append([True, False, "yes", None, 2, []])
        else:
            out.append(ctx["strings"] + WRONG + default * 6)
    return out


class Tally:
    """Counts of answers by kind; ``bad`` lists what breaks the rules."""

    BAD = ("crash", "multi-line error", "leak", "accepted bad input", "long audio", "wrong answer",
           "unexpected exception")

    def __init__(self):
        self.counts, self.lock, self.bad, self.unexpected = Counter(), threading.Lock(), [], []

    def add(self, kind: str, what: str = "", detail: str = "") -> None:
        with self.lock:
            self.counts[kind] += 1
            if kind == "unexpected exception":
                self.unexpected.append(f"{what}: {detail[detail.find('failed in'):][:160]}")
            if kind in self.BAD:
                self.bad.append(f"{kind}: {what}: {detail[:300]}")


def check_result(result, tally: Tally, what: str, args: str) -> None:
    tally.add("result")
    text = json.dumps(result, default=str)
    if SECRET in text:
        tally.add("leak", what, "the secret file's content is in a result")
    refused = [n for n in MUST_REFUSE if f"/{n}'" in args or f"/{n}\"" in args]
    if refused:
        tally.add("accepted bad input", what, f"{refused} gave a result")
    for item in result if isinstance(result, list | tuple) else [result]:
        if isinstance(item, str) and item.endswith(".wav") and Path(item).is_file():
            if sf.info(item).duration > 30.0:  # reading a server file aloud takes minutes
                tally.add("long audio", what, f"{sf.info(item).duration:.0f} s")


def answer(job, tally: Tally, what: str, args: str) -> None:
    from gradio_client.exceptions import AppError

    if isinstance(job, Exception):
        tally.add("not sent", what, repr(job))
        return
    try:
        result = job.result(timeout=240)
    except AppError as e:
        msg = str(e)
        multi = "\n" in msg.strip() or "Traceback" in msg
        tally.add("multi-line error" if multi else "error", what, msg)
        if "verbose error reporting" in msg:
            tally.add("error without a message", what, msg)
        if "this request failed in" in msg:  # an exception the handler did not expect
            tally.add("unexpected exception", what, msg)
        return
    except Exception as e:  # noqa: BLE001 - anything else: no answer from the server
        tally.add("crash", what, f"{e.__class__.__name__}: {e} for {args[:200]}")
        return
    check_result(result, tally, what, args)


def raw_request(url: str, fn_index: int, data: list, event_data=None) -> dict | int:
    """One request without gradio_client (NaN numbers, forged file references, select
    events): the final queue message, or the HTTP status of a refused join."""
    session = uuid.uuid4().hex
    body = {"data": data, "event_data": event_data, "fn_index": fn_index, "trigger_id": None}
    payload = json.dumps({**body, "session_hash": session})  # NaN allowed, as browsers cannot
    join = httpx.post(f"{url}gradio_api/queue/join", content=payload,
                      headers={"content-type": "application/json"})  # fmt: skip
    if join.status_code != 200:
        return join.status_code
    with httpx.stream("GET", f"{url}gradio_api/queue/data?session_hash={session}", timeout=240) as s:
        for line in s.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return msg
    return 0


def raw_cases(url: str, fns: dict, ctx: dict) -> list[tuple]:
    """Forged file references (server paths never uploaded, data: and file= URLs), NaN
    numbers, hostile select events."""
    index = {fn.api_name: i for i, fn in fns.items()}
    adapter = next(ctx["root"].glob("*/adapter/*.safetensors"))
    forged = [{"path": p, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.png"}
              for p in (str(ctx["secret"]), str(adapter), "../../etc/passwd", "/etc/passwd")]
    forged += [{"path": None, "url": u, "meta": {"_type": "gradio.FileData"}}
               for u in ("data:image/png;base64,iVBORw0KGgo=", f"{url}gradio_api/file={adapter}",
                         f"file://{ctx['secret']}")]  # fmt: skip
    asr = str(ctx["root"] / "asr-s2_lora")
    cases = []
    for f in forged:
        cases += [("on_classify", index["on_classify"], [None, f], None)]
        cases += [("on_upload", index["on_upload"], [f], None)]
        cases += [("on_go", index["on_go"], [asr, f, False, ""], None)]
    for n in (float("nan"), float("inf"), -float("inf")):
        cases += [("on_generate", index["on_generate"], [n], None)]
        cases += [("on_change", index["on_change"], [None, "gaussian_noise", n, "", ""], None)]
    for ev in (None, {}, {"index": "x"}, {"index": [1e308, -1]}, {"index": [float("nan"), 0]},
               {"index": [10**30, 10**30]}, {"index": [3, 3], "value": str(ctx["secret"])}):
        cases.append(("on_click", index["on_click"], [None, "object"], ev))
    return cases


def tree(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` -> its modification time."""
    return {str(p.relative_to(folder)): p.lstat().st_mtime_ns
            for p in folder.rglob("*") if not p.is_dir()}  # fmt: skip


def snapshot(ctx: dict) -> dict:
    git = ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=all"]
    return {"repo": subprocess.run(git, capture_output=True, text=True, check=True).stdout,
            **{k: tree(ctx[k]) for k in ("root", "tmp", "home", "outside")}}  # fmt: skip


def strays(before: dict, after: dict) -> list[str]:
    """Files that appeared or changed outside the app's own folders."""
    bad = [] if after["repo"] == before["repo"] else [f"repo tree: {after['repo']}"]
    own = {"tmp": ("gradio/", "lorakit-demo/"), "root": ("data/clip-example/",), "home": (),
           "outside": ()}  # fmt: skip
    for key, allowed in own.items():
        for p, stamp in after[key].items():
            if before[key].get(p) != stamp and not p.startswith(allowed):
                bad.append(f"{key}: {p}")
    return bad


@pytest.fixture(scope="module")
def server(tiny_runs, tmp_path_factory):
    """The hub as tests/apps/conftest.py launches it, on a copy of the tiny runs, with its own
    HOME and TMPDIR (so any stray file shows); a symlink in the runs folder points out."""
    from lorakit.apps.web.common import DemoContext, served_paths, theme
    from lorakit.apps.web.hub import build_hub

    src, specs, status = tiny_runs
    base = tmp_path_factory.mktemp("fuzz")
    ctx = {k: base / k for k in ("root", "tmp", "home", "outside", "client")}
    shutil.copytree(src, ctx["root"], symlinks=True)
    for k in ("tmp", "home", "outside", "client"):
        ctx[k].mkdir()
    shutil.copytree(ctx["root"] / "clip-block_lora", ctx["outside"] / "clip-block_lora")
    (ctx["root"] / "escape").symlink_to(ctx["outside"] / "clip-block_lora")
    ctx["secret"] = ctx["outside"] / "secret.txt"
    ctx["secret"].write_text(f"{SECRET} is a private line of notes that must stay here\n" * 40)
    saved = tempfile.tempdir, dict(os.environ)
    tempfile.tempdir = str(ctx["tmp"])
    os.environ.update(TMPDIR=str(ctx["tmp"]), HOME=str(ctx["home"]),
                      GRADIO_TEMP_DIR=str(ctx["tmp"] / "gradio"))  # fmt: skip
    app = DemoContext(ctx["root"], specs, status)
    demo = build_hub(app)
    demo.queue(default_concurrency_limit=2)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, theme=theme(),
                **served_paths(ctx["root"], app.specs))  # fmt: skip
    ctx["files"] = make_files(ctx["client"], ctx["secret"])
    ctx["strings"] = strings(ctx)
    try:
        yield demo, ctx
    finally:
        demo.close()
        tempfile.tempdir = saved[0]
        os.environ.clear()
        os.environ.update(saved[1])


def fuzz_jobs(client, api: dict, ctx: dict, rng: random.Random) -> list[tuple]:
    """Random argument draws for every endpoint, all submitted at once (the server takes
    two at a time, the rest queue)."""
    jobs = []
    for name, spec in sorted(api.items()):
        values = pools(spec["parameters"], ctx)
        for _ in range(ROUNDS if values else 2):
            args = [rng.choice(v) for v in values]
            try:
                job = client.submit(*args, api_name=name)
            except Exception as e:  # noqa: BLE001 - the client library refused to send it
                job = e
            jobs.append((name, job, repr(args)[:2000]))
    return jobs


def send_raw(url: str, fns: dict, ctx: dict, tally: Tally) -> int:
    cases = raw_cases(url, fns, ctx)
    for name, fn_index, data, ev in cases:
        msg = raw_request(url, fn_index, data, ev)
        if isinstance(msg, int):
            tally.add("error" if 400 <= msg < 500 else "crash", name, f"HTTP {msg}")
        elif msg.get("success"):
            check_result(msg.get("output"), tally, name, repr(data))
        else:
            err = str((msg.get("output") or {}).get("error") or "")
            tally.add("multi-line error" if "\n" in err.strip() else "error", name, err)
    adapter = next(ctx["root"].glob("*/adapter/*.safetensors"))
    for path in (ctx["secret"], adapter, "/etc/passwd"):
        code = httpx.get(f"{url}gradio_api/file={path}").status_code
        tally.add("error" if code in (403, 404) else "leak", "GET file=", f"{path}: HTTP {code}")
    return len(cases) + 3


def known_answers(client, ctx: dict, tally: Tally) -> int:
    """Hostile inputs refused for the right reason (the random draws only check the form)."""
    from gradio_client import handle_file

    files, asr = ctx["files"], str(ctx["root"] / "asr-s2_lora")
    clip = str(ctx["root"] / "clip-block_lora")
    expect = [
        ("/on_upload", (handle_file(str(files["bomb.png"])),), "12000x12000 px is too large"),
        ("/on_go", (asr, handle_file(str(files["nan.wav"])), False, ""), "non-finite"),
        ("/on_go", (asr, handle_file(str(files["long.ogg"])), False, ""), "over the limit"),
        ("/on_load", (str(ctx["outside"] / "clip-block_lora"),), "not offered by this server"),
        ("/on_load", (str(ctx["root"] / "escape"),), "not offered by this server"),
        ("/on_load", (f"{clip}/../../outside/clip-block_lora",), "not offered by this server"),
    ]
    for name, args, words in expect:
        try:
            client.predict(*args, api_name=name)
            tally.add("wrong answer", name, f"a result, not {words!r}")
        except Exception as e:  # noqa: BLE001 - the refusal must name the reason
            if not re.search(words, str(e)):
                tally.add("wrong answer", name, f"{e}, not {words!r}")
    wav, _ = client.predict(f"-f{ctx['secret']}", api_name="/on_speak")
    if sf.info(wav).duration > 15.0:  # the text read out takes seconds, the file minutes
        tally.add("long audio", "/on_speak", f"{sf.info(wav).duration:.0f} s")
    return len(expect) + 1


def still_serving(client, api: dict, ctx: dict) -> None:
    """Normal requests to each app succeed after the fuzzing."""
    from gradio_client import handle_file

    files, root = ctx["files"], ctx["root"]
    client.predict(handle_file(str(files["grey.png"])), api_name="/on_upload")  # SAM tab
    segment = next(n for n, s in api.items() if [p["parameter_name"] for p in s["parameters"]]
                   == ["f", "m", "b"])  # fmt: skip
    out = client.predict(str(root / "cod-fora"), "box", "4, 4, 40, 40", api_name=segment)
    assert "**prompt:** box | **image:** grey.png (64x64)" in out[2]
    assert "scene 1 generated" in client.predict(1, api_name="/on_generate")[1]
    loaded = client.predict(str(root / "clip-block_lora"), api_name="/on_load")
    assert "Loaded run" in json.dumps(loaded)
    heard = client.predict(str(root / "asr-s2_lora"), handle_file(str(files["ok.wav"])), False,
                           "", api_name="/on_go")[0]  # fmt: skip
    assert abs(sf.info(heard).duration - 1.0) < 0.05


def test_every_endpoint_answers_hostile_input_and_the_app_keeps_serving(server, capsys):
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    demo, ctx = server
    url, started = demo.local_url, time.time()
    client = Client(url, verbose=False, download_files=str(ctx["client"] / "downloads"),
                    httpx_kwargs={"timeout": 120})  # fmt: skip
    before = snapshot(ctx)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    rng, tally = random.Random(SEED), Tally()
    jobs = fuzz_jobs(client, api, ctx, rng)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda j: answer(j[1], tally, j[0], j[2]), jobs))
    tried = len(jobs) + send_raw(url, demo.fns, ctx, tally) + known_answers(client, ctx, tally)
    still_serving(client, api, ctx)
    stray = strays(before, snapshot(ctx))
    counts = {
        "seed": SEED, "endpoints": len(api), "inputs_tried": tried,
        "results": tally.counts["result"], "errors": tally.counts["error"],
        "errors_without_message": tally.counts["error without a message"],
        "unexpected_exceptions": tally.counts["unexpected exception"],
        "crashes": tally.counts["crash"], "multi_line_errors": tally.counts["multi-line error"],
        "leaks": tally.counts["leak"], "accepted_bad_input": tally.counts["accepted bad input"],
        "not_sent": tally.counts["not sent"], "stray_files": len(stray), "seconds": round(time.time() - started),
    }  # fmt: skip
    with capsys.disabled():
        print(f"\nfuzz counts: {json.dumps(counts)}")
        print("\n".join(sorted(set(tally.unexpected))))
    COUNTS.parent.mkdir(parents=True, exist_ok=True)
    COUNTS.write_text(json.dumps(counts, indent=1) + "\n")
    assert stray == [], stray
    assert tally.bad == [], "\n".join(tally.bad)
    assert tried >= 200 and tally.counts["error"] > 0 and tally.counts["result"] > 0
