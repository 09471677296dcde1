"""``offline-assistant doctor``: what this installation is and whether it can run.

Prints the processor's features, the llama.cpp engine as this program loads it (backends,
devices, GPU offload, the library file), the folders in use, versions and installed models;
``--json`` for programs. Exits 1 when it found a problem, 0 otherwise.

The engine is loaded in a child process (this program with ``--engine-probe``), so an engine
that dies with "illegal instruction" is reported instead of ending the doctor too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from assistant import doctor
from assistant.engine import diagnose
from assistant.paths import app_paths


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check this computer and installation: processor, engine, folders"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="load llama.cpp in this process (faster; a crashing engine ends the doctor too)",
    )
    # The child of the check: load llama.cpp here, print its report as one JSON line.
    parser.add_argument("--engine-probe", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(func=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    if args.engine_probe:
        # Below the app's priority: on a first start this runs while the window paints.
        if hasattr(os, "nice"):
            with contextlib.suppress(OSError):
                os.nice(10)
        print(json.dumps(diagnose.inspect_engine().to_dict()), flush=True)
        return 0
    paths = app_paths()
    if args.in_process:
        engine = diagnose.inspect_engine()
    else:
        engine = doctor.check_engine(paths, fresh=True)
    sections = doctor.collect(paths, engine)
    if args.json:
        json.dump(doctor.to_json(sections), sys.stdout, indent=2)
        print()
    else:
        sys.stdout.write(doctor.to_text(sections))
    return 1 if doctor.problems(sections) else 0
