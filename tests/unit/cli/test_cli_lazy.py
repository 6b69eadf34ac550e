"""The command line imports only the module of the command it runs; ``--help`` imports none."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest
from project_paths import PROJECT_ROOT

from mushcam.cam import method_names
from mushcam.cli import main
from mushcam.cli.main import COMMANDS, build_parser, chosen_command


def registered(module: str) -> list[tuple[str, str]]:
    """The (name, help) pairs that ``module``'s add_cli registers."""
    subparsers = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(module).add_cli(subparsers)
    helps = {action.dest: action.help for action in subparsers._choices_actions}
    return [(name, helps[name]) for name in subparsers.choices]


@pytest.mark.parametrize("module", list(COMMANDS))
def test_the_table_lists_what_each_module_registers(module: str) -> None:
    assert list(COMMANDS[module]) == registered(module)


def run_python(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_help_lists_every_command_and_imports_no_command_module() -> None:
    code = ("import sys\nfrom mushcam.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
            "    print('exit', e.code)\nprint('torch' in sys.modules, sorted(m for m in sys.modules "
            "if m.startswith('mushcam.cli.') and m not in ('mushcam.cli.main', 'mushcam.cli.common')))")
    *help_lines, exit_line, imported = run_python(code)
    assert exit_line == "exit 0" and imported == "False []"
    text = "\n".join(help_lines)
    for commands in COMMANDS.values():
        for name, _ in commands:
            assert f"    {name} " in text or f"    {name}\n" in text


def test_a_command_imports_only_its_own_module() -> None:
    code = ("import sys\nfrom mushcam.cli import main\ntry:\n    main(['gradcam', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in sys.modules if m.startswith('mushcam.cli.')))")
    lines = run_python(code)
    assert lines[-1] == "['mushcam.cli.common', 'mushcam.cli.main', 'mushcam.cli.pipeline']"
    assert all(name in "\n".join(lines) for name in method_names())  # every --method choice


def test_the_old_spellings_still_work(capsys: pytest.CaptureFixture[str]) -> None:
    from mushcam.cli import main as main_module
    from mushcam.cli import parse_target, with_checkpoint

    modules = importlib.import_module("mushcam.cli.main").COMMAND_MODULES
    assert [m.__name__ for m in modules] == list(COMMANDS)
    assert callable(parse_target) and callable(with_checkpoint) and callable(main_module)
    full = build_parser()  # every module's options, as before
    assert full.parse_args(["gradcam", "--data", "d", "--out", "o"]).batch_size >= 1
    assert chosen_command(["-h"]) is None and chosen_command(["report", "x.sqlite"]) == "report"


def test_an_unknown_command_names_every_choice(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["gradcm"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'gradcm'" in err and "gradcam" in err and "patterns" in err
    assert "Traceback" not in err
