"""Every ```python block of README.md runs as pasted, in order, in one session.

The blocks are the README's own text; for speed the test swaps the offline default model for
the tiny one and shrinks a few counts (listed in ``FAST``), nothing else. A README edit that
breaks a block fails here.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)

#: text substitutions that keep the blocks' meaning but make them quick on 2 cores
FAST = {
    # the second core of the cross-network ensemble: another tiny network (before the
    # general Lite2 -> tiny swap below)
    'load_model("efficientnet_lite2"))  # the second core': 'load_model("tiny_b"))',
    "[r > 0.5]": "[r > -1]",
    '"efficientnet_lite0"': '"tiny"',
    '"efficientnet_lite2"': '"tiny"',
    "natural(500,": "natural(40,",
    "n_sites=100": "n_sites=8",
    "steps=256": "steps=3",
    "steps=128": "steps=3",
    "natural(1000,": "natural(24,",
    "n_sites=96": "n_sites=24",
    "n_sites=64": "n_sites=16",
    "repeats=5": "repeats=2",
    "controls=20": "controls=2",
    "n_per_target=4": "n_per_target=1",
    '"examples/data/': f'"{ROOT}/examples/data/',
    # the tiny model predicts the Lite1 session worse than Lite0 does: keep every site
    "mapped.predictivity > 0.5": "mapped.predictivity > -1",
}


def test_readme_has_the_blocks_it_promises():
    assert len(BLOCKS) >= 6
    joined = "\n".join(BLOCKS)
    for name in ("my_v4_session", "my_display", "test_stimuli", "test_labels"):
        assert name not in joined, f"README block uses {name!r}, which nothing defines"


def test_readme_blocks_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for k, block in enumerate(BLOCKS):
        code = block
        for old, new in FAST.items():
            code = code.replace(old, new)
        try:
            exec(compile(code, f"README.md python block {k}", "exec"), namespace)
        except Exception as err:  # name the block, not just the line
            pytest.fail(f"README python block {k} fails: {type(err).__name__}: {err}\n{block}")
