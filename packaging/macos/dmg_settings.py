"""dmgbuild settings: a disk image with the app and a link to /Applications.

    dmgbuild -s packaging/macos/dmg_settings.py -D app="dist/Offline Assistant.app" \
        "Offline Assistant" dist/OfflineAssistant-0.1.0.dmg

dmgbuild runs this file with ``defines`` (the -D values) in scope.
"""

import os.path

application = defines.get("app", "dist/Offline Assistant.app")  # noqa: F821
appname = os.path.basename(application)

# LZFSE-compressed read-only image (macOS 10.11+): smaller than zlib, fast to open.
format = "ULFO"
files = [application]
symlinks = {"Applications": "/Applications"}
icon = os.path.join(application, "Contents", "Resources", "app.icns")
icon_locations = {appname: (140, 130), "Applications": (500, 130)}
window_rect = ((200, 200), (640, 300))
default_view = "icon-view"
show_icon_preview = False
icon_size = 128
text_size = 13
