"""Running the ``vaelens`` command line inside a test and checking its error lines."""

import contextlib
import io

from vaelens import cli


def run_cli(argv):
    """``cli.main(argv)`` with stdout and stderr captured: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as exc:  # argparse errors
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def assert_clean_error(code, err, *fragments):
    """Exit status 2 and one line on stderr (warnings aside) holding every fragment."""
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln and not ln.startswith("vaelens: warning")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], lines[0]
