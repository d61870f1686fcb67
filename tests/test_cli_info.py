"""``vaelens info`` and the shipped model card name no file-system paths of another machine."""

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from vaelens import cli
from vaelens.commands import info

CARD = Path(info.__file__).resolve().parents[1] / "vae" / "pretrained" / "vae_default.json"

#: An absolute POSIX or Windows path, a home-relative one, or one that climbs out with ``../``.
FOREIGN_PATH = re.compile(r"(?<![\w.])(/[\w.-]+/|~/|\.\./|[A-Za-z]:\\)")


def strings(value):
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def info_output():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["info"])
    return code, out.getvalue()


def test_pattern_finds_the_paths_it_is_meant_to_find():
    for text in (
        "--catalog /home/me/cosmos/cat.fits",
        "--catalog ../shared/data/cat.fits",
        "log in ~/runs/x.log",
        r"C:\data\cat.fits",
    ):
        assert FOREIGN_PATH.search(text), text
    for text in ("0.03 arcsec/px", "70 galaxies/s", "x / y", "vaelens.data.synthetic"):
        assert not FOREIGN_PATH.search(text), text


def test_shipped_model_card_has_no_foreign_paths():
    card = json.loads(CARD.read_text())
    found = [s for s in strings(card) if FOREIGN_PATH.search(s) or "../shared" in s]
    assert not found, found
    # the text says what the data were
    assert "COSMOS" in card["data"]["real"]["description"]
    assert "galsim_download_cosmos" in card["data"]["real"]["description"]


def test_info_output_has_no_foreign_paths():
    code, out = info_output()
    assert code == 0
    assert "Pretrained VAE model card" in out
    assert not FOREIGN_PATH.search(out), FOREIGN_PATH.search(out).group(0)
    assert "../shared" not in out


def test_info_cuts_paths_of_a_card_to_their_last_component(monkeypatch):
    card = {
        "name": "my_vae",
        "training": {
            "command": "python -m vaelens.vae.train --catalog /scratch/me/cosmos/cat.fits "
            "--out ../runs/my_vae/ --epochs 3",
            "log": "~/logs/train.log",
            "nested": {"deeper": {"dir": "/tmp/cache"}},
        },
        "image_convention": "unit flux, 0.03 arcsec/px",
    }
    monkeypatch.setattr(info, "model_card", lambda: card)
    code, out = info_output()
    assert code == 0
    assert not FOREIGN_PATH.search(out), out
    for kept in ("--catalog cat.fits", "--out my_vae", "log: train.log", "cache", "arcsec/px"):
        assert kept in out, kept


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("--catalog /a/b/cat.fits --out ../runs/v/", "--catalog cat.fits --out v"),
        ('{"dir": "/tmp/vl-cache"}', '{"dir": "vl-cache"}'),
        (r"C:\Users\me\w.fits", "w.fits"),
        ("./vae_run", "vae_run"),
        ("0.03 arcsec/px, 70 galaxies/s, x / y, 1/2", "0.03 arcsec/px, 70 galaxies/s, x / y, 1/2"),
    ],
)
def test_strip_paths(text, expected):
    assert info.strip_paths(text) == expected
