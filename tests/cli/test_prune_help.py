"""`prunekit prune --help` names every method `--method` accepts (the list is written by hand, so it must not drift)."""
import re

from prunekit.cli import build_parser
from prunekit.methods.structured import STRUCTURED_METHODS


def test_prune_help_lists_every_structured_method():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    text = " ".join(sub.choices["prune"].format_help().split())
    listed = re.search(r"With --method \(([^)]*)\)", text).group(1)
    names = {n.strip() for n in listed.split(",")}
    assert set(STRUCTURED_METHODS.names()) | {"dynamic"} == names
