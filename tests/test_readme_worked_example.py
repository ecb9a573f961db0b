"""The README's worked example, run as written, and every `artdet` command the README shows exists (issue 11).

The example's bash block runs in a shell with these changes only, so it finishes in a test: 1 + 1 short
epochs at a smaller size, a free port, a fresh data directory, the drawing in the test's folder, and a lower
`--threshold` (the COCO weights here are fabricated, random-init: their scores are low, not a quality figure).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import socket
import subprocess

import numpy as np
from PIL import Image

from artdet.detector.draw import class_colour
from artdet.tools.cli import build_parser
from tests.conftest import PEOPLE_ART, ROOT, needs_people_art

README = (ROOT / "README.md").read_text()


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def _worked_example() -> str:
    section = README[README.index("## Worked example"):README.index("\n## ", README.index("## Worked example") + 1)]
    return next(block for block in _bash_blocks(section) if "artdet serve" in block)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _shortened(script: str, port: int, console_port: int, data_dir, drawn) -> str:
    changes = [("--stage1-epochs 1 --stage2-epochs 8", "--stage1-epochs 1 --stage2-epochs 1 --max-iters-per-epoch 4"),
               ("--max-size 512", "--max-size 256"), ("8052", str(console_port)), ("50052", str(port)),
               ("example-data", str(data_dir)),
               ("drawn.png", str(drawn)), ("--threshold 0.3", "--threshold 0.05")]
    for old, new in changes:
        assert old in script, f"the README's worked example no longer has {old!r}; update this test"
        script = script.replace(old, new)
    return script


@needs_people_art
def test_the_readmes_worked_example_runs_as_written_and_ends_in_a_labelled_drawing(tmp_path, torch_home):
    drawn = tmp_path / "drawn.png"
    script = _shortened(_worked_example(), _free_port(), _free_port(), tmp_path / "example-data", drawn)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TORCH_HOME": str(torch_home)}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", "trap 'kill $(jobs -p) 2>/dev/null' EXIT\n" + script],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    detected = json.loads(result.stdout[result.stdout.rindex("\n{") + 1:])  # detect's --json ends the output
    assert detected["model"] == "people" and detected["model_version"] == 1
    assert detected["detections"] and {d["label"] for d in detected["detections"]} == {"person"}
    painting = re.search(r"\$D/(images/\S+\.jpg)", _worked_example()).group(1)
    original = Image.open(PEOPLE_ART / painting).convert("RGB")
    drawing = np.asarray(Image.open(drawn).convert("RGB"))
    assert drawing.shape[:2] == (original.height, original.width) == (detected["height"], detected["width"])
    coloured = np.all(drawing == class_colour(detected["detections"][0]["label_id"]), axis=-1)
    solid = np.lib.stride_tricks.sliding_window_view(coloured, (8, 8)).all(axis=(-1, -2))
    assert solid.any()  # a filled label tag in the class's colour (a box outline is 2 px wide)


def _subcommand(parser: argparse.ArgumentParser, words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The deepest sub-parser `words` name, and the words that named it."""
    named = []
    while words:
        choices = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if not choices or words[0] not in choices:
            break
        parser, word = choices[words[0]], words.pop(0)
        named.append(word)
    return parser, named


def test_every_artdet_command_and_flag_in_the_readme_exists():
    commands = []
    for block in _bash_blocks(README):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|\|", line.split("  #")[0]):
                words = shlex.split(part, comments=True)
                while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):  # VAR=value before the command
                    words.pop(0)
                if words and words[0].rsplit("/", 1)[-1] == "artdet":
                    commands.append(words[1:])
    assert len(commands) >= 15
    for words in commands:
        parser, named = _subcommand(build_parser(), list(words))
        assert named, f"`artdet {' '.join(words)}` names no command"
        flags = {option for action in parser._actions for option in action.option_strings}
        unknown = [w.split("=")[0] for w in words if w.startswith("--") and w.split("=")[0] not in flags]
        assert not unknown, f"`artdet {' '.join(named)}` has no {unknown}"
