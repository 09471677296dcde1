"""PyInstaller runtime hook: the processor check, before anything else in the bundle runs.

Custom runtime hooks run before PyInstaller's own (the Qt one loads Qt), and Qt and numpy are
compiled for x86-64-v2: on an older CPU they die with SIGILL before the launcher's own code
would get to say why. See launcher.check_cpu.
"""

import sys

import launcher

launcher.check_cpu(sys.argv[1:])
