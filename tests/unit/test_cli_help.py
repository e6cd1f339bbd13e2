"""`pycontainer --help` and each command's --help describe every option they take."""
import pytest

from pycontainer import cli


def _help_of(capsys, argv):
    assert cli.main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_option_is_described(capsys, command):
    flags, _, _ = cli.COMMANDS[command]
    out = _help_of(capsys, [command, "--help"])
    for flag in flags:
        line = next(ln for ln in out.splitlines() if ln.strip().startswith("--" + flag.names[0]))
        assert flag.help and line.rstrip().endswith(flag.help), (command, flag.names)


def test_global_help_describes_every_global_option(capsys):
    out = _help_of(capsys, ["--help"])
    for command in cli.COMMANDS:
        assert command in out
    for flag in cli.GLOBAL_FLAGS:
        assert flag.help and flag.help in out, flag.names
