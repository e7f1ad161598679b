import subprocess
import sys

from heartfast.cli import build_parser, main


def test_every_command_has_help():
    parser, _ = build_parser()
    assert "info" in parser.format_help()
    assert main(["info"]) == 0


def test_group_default_command_is_inserted():
    parser, tree = build_parser()
    calls = []
    tree.add("demo_group run", "x", lambda a: calls.append(a.path), default=True).add_argument("path")
    tree.add("demo_group other", "y", lambda a: None)
    args = parser.parse_args(tree.with_defaults(["demo_group", "answers.jsonl"]))
    args.func(args)
    assert calls == ["answers.jsonl"]
    assert tree.with_defaults(["demo_group", "other"]) == ["demo_group", "other"]


def test_python_m_heartfast_runs():
    out = subprocess.run([sys.executable, "-m", "heartfast", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "COMMAND" in out.stdout
