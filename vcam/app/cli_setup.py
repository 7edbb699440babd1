"""``vcam config``, ``vcam completion``, ``vcam desktop`` and ``vcam autostart``: setting vcam up
on this computer (the settings file, shell completion, the menu entry, start at login)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from vcam.runtime.errors import ConfigError, VcamError

SHELLS = ("bash", "zsh", "fish")

USER_FILE_HEADER = """\
# vcam settings. Every key, its meaning and its default is in
#   {defaults}
# Set here only what you change, under its [section]; a wrong key or value is named in the
# error. Check this file with `vcam config show`.
"""


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    config = sub.add_parser("config", parents=[common], help="where the settings file is, what is in force, edit it",
                            description="path: print the user settings file's path (it may not exist yet). "
                                        "show: print every setting in force and the files it came from. "
                                        "edit: open the user settings file in $VISUAL / $EDITOR (made first, "
                                        "with a pointer to the defaults), then check it.")
    config.add_argument("action", choices=("path", "show", "edit"))
    config.set_defaults(run=_config, subparser=config)

    completion = sub.add_parser("completion", help="print a shell completion script",
                                description="Print the completion script for SHELL. bash: "
                                            "`vcam completion bash > ~/.local/share/bash-completion/completions/vcam`; "
                                            "zsh: `vcam completion zsh > ~/.zfunc/_vcam` (with ~/.zfunc on fpath); "
                                            "fish: `vcam completion fish > ~/.config/fish/completions/vcam.fish`.")
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(run=_completion, subparser=completion)

    desktop = sub.add_parser("desktop", help="add or remove vcam in the desktop's application menu",
                             description="install: a menu entry (freedesktop .desktop file and icon) that starts "
                                         "`vcam run` with this installation; remove: take it away. Linux and BSD "
                                         "desktops; on macOS and Windows start vcam from a terminal or at login.")
    desktop.add_argument("action", choices=("install", "remove"))
    desktop.set_defaults(run=_desktop, subparser=desktop)

    autostart = sub.add_parser("autostart", help="start the live webcam at login: on, off or status",
                               description="Start `vcam run` when you log in (XDG autostart on Linux, a LaunchAgent "
                                           "on macOS, the Run key on Windows). The tray's \"Start at login\" is the "
                                           "same setting.")
    autostart.add_argument("action", choices=("on", "off", "status"))
    autostart.set_defaults(run=_autostart, subparser=autostart)


# -- vcam config --


def _config(args: argparse.Namespace) -> int:
    from vcam.app.settings import default_config_path, load_settings, user_config_path

    path = Path(args.config) if args.config else user_config_path()
    if args.action == "path":
        print(path)
        return 0
    if args.action == "show":
        settings = load_settings(args.config)
        print(render_settings(settings))
        return 0
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(USER_FILE_HEADER.format(defaults=default_config_path()), encoding="utf-8")
        print(f"vcam: made {path}", file=sys.stderr)
    editor = _editor()
    if editor is None:
        print(f"vcam: no editor found (set $VISUAL or $EDITOR); the settings file is {path}", file=sys.stderr)
        return 0
    code = subprocess.call([*editor, str(path)])
    if code != 0:
        raise VcamError(f"the editor ({shlex.join(editor)}) exited with status {code}; {path} is as it left it")
    if editor[0] in _OPENERS:  # hands the file to a desktop app and returns at once: nothing to check yet
        print(f"vcam: opened {path}; check it with `vcam config show` when saved", file=sys.stderr)
        return 0
    try:
        load_settings(path)
    except ConfigError as e:
        raise ConfigError(f"{e} (edit again with `vcam config edit`)") from None
    print(f"vcam: {path} is valid", file=sys.stderr)
    return 0


_OPENERS = ("xdg-open", "open", "notepad")


def _editor() -> list[str] | None:
    """The user's editor as argv: ``$VISUAL``, ``$EDITOR``, else the platform's text opener."""
    for var in ("VISUAL", "EDITOR"):
        value = os.environ.get(var, "").strip()
        if value:
            return shlex.split(value)
    if sys.platform == "win32":
        return ["notepad"]
    if sys.platform == "darwin":
        return ["open", "-W", "-t"]
    for name in ("editor", "nano", "vi"):
        if shutil.which(name):
            return [name]
    return ["xdg-open"] if shutil.which("xdg-open") else None


def render_settings(settings) -> str:
    """Every section and key in force as TOML, preceded by the files read (defaults first)."""
    lines = ["# settings in force, read from (later files override earlier ones):"]
    lines += [f"#   {f}" for f in settings.files]
    for field in dataclasses.fields(settings):
        if field.name == "files":
            continue
        lines += ["", f"[{field.name}]"]
        for key, value in dataclasses.asdict(getattr(settings, field.name)).items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if value is None:
        return '""'
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


# -- vcam completion --


def _completion(args: argparse.Namespace) -> int:
    from vcam.app.cli import build_parser

    print(completion_script(build_parser(), args.shell))
    return 0


def _commands(parser: argparse.ArgumentParser) -> dict[str, tuple[list[str], list[str], list[str]]]:
    """``{subcommand: (options, options taking a path, positional choices)}``."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = {}
    for name, p in sub.choices.items():
        opts, path_opts, choices = [], [], []
        for a in p._actions:
            if a.option_strings:
                long = [o for o in a.option_strings if o.startswith("--")]
                opts += long
                if a.type is Path or (a.metavar or "").endswith((".mp4", ".csv")) or a.dest in ("photo", "audio"):
                    path_opts += long
            elif a.choices:
                choices += [str(c) for c in a.choices]
        out[name] = (opts, path_opts, choices)
    return out


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """A completion script for ``shell`` (``bash``, ``zsh``, ``fish``) made from ``parser``."""
    commands = _commands(parser)
    if shell == "fish":
        lines = ["# vcam completion for fish (vcam completion fish)", "complete -c vcam -f"]
        names = " ".join(commands)
        lines.append(f'complete -c vcam -n "not __fish_seen_subcommand_from {names}" -a "{names}"')
        for name, (opts, path_opts, choices) in commands.items():
            cond = f'-n "__fish_seen_subcommand_from {name}"'
            if choices:
                lines.append(f'complete -c vcam {cond} -a "{" ".join(choices)}"')
            for o in opts:
                lines.append(f"complete -c vcam {cond} -l {o[2:]}" + (" -r -F" if o in path_opts else ""))
        return "\n".join(lines)
    cases = []
    for name, (opts, path_opts, choices) in commands.items():
        words = " ".join(opts + choices)
        files = "|".join(path_opts)
        file_case = f'            case "$prev" in {files}) COMPREPLY=($(compgen -f -- "$cur")); return;; esac\n' if files else ""
        cases.append(f"        {name})\n{file_case}"
                     f'            COMPREPLY=($(compgen -W "{words}" -- "$cur"));;')
    body = (
        "_vcam() {\n"
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" cmd="" i\n'
        "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
        '        case "${COMP_WORDS[i]}" in -*) ;; *) cmd="${COMP_WORDS[i]}"; break;; esac\n'
        "    done\n"
        '    case "$cmd" in\n'
        f'        "") COMPREPLY=($(compgen -W "{" ".join(commands)} --help --version --verbose" -- "$cur"));;\n'
        + "\n".join(cases) + "\n"
        "    esac\n"
        "}\n"
        "complete -o default -F _vcam vcam"
    )
    if shell == "zsh":
        return "#compdef vcam\n# vcam completion for zsh (vcam completion zsh): bash's, through bashcompinit\n" \
               "autoload -U +X bashcompinit && bashcompinit\n" + body
    return "# vcam completion for bash (vcam completion bash)\n" + body


# -- vcam desktop / autostart --


def _desktop(args: argparse.Namespace) -> int:
    from vcam.app import desktop

    if sys.platform in ("win32", "darwin"):
        raise VcamError("vcam desktop: menu entries are for Linux and BSD desktops; "
                        "on this system use `vcam autostart on` or start `vcam run` from a terminal")
    if args.action == "install":
        for path in desktop.install_menu_entry():
            print(f"wrote {path}")
    else:
        removed = desktop.remove_menu_entry()
        print("\n".join(f"removed {p}" for p in removed) or "no menu entry to remove")
    return 0


def _autostart(args: argparse.Namespace) -> int:
    from vcam.app.desktop import Autostart

    auto = Autostart()
    if args.action == "on":
        auto.enable()
    elif args.action == "off":
        auto.disable()
    print(f"start at login: {'on' if auto.enabled else 'off'} ({auto.where})")
    return 0
