"""Screenshots of the real app, with the real SmolLM2 model, for the README.

Run under a virtual display::

    xvfb-run -a .venv/bin/python tools/screenshots.py [--out docs/screenshots]

It starts the app through ``assistant.ui.app.run_app`` in a throw-away home folder with the
SmolLM2-135M test model imported, types a question into the focused input, presses Enter and
lets the answer stream at temperature 0. It then saves the chat, the model manager (with a
download under way) and the welcome screen, in the light theme and in the dark one.

The download comes from the tests' local stand-in for the Hugging Face Hub
(``tests/hub_server.py``), throttled so the picture catches it half way: it serves the real
SmolLM2 file under its real repository and name, and nothing leaves the machine.

SmolLM2 answers "Write a Python function that adds two numbers." with a code block at
temperature 0. Should a future engine change that, the script seeds the history with a finished
exchange that has one and streams a live follow-up below it, so the picture always shows both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTION = "Write a Python function that adds two numbers."
FOLLOW_UP = "Explain in one sentence what it does."
SEEDED_ANSWER = (
    "Here is a small function:\n\n```python\ndef add(a: float, b: float) -> float:\n"
    '    """Return the sum of a and b."""\n    return a + b\n```\n\n'
    "Call it as `add(2, 3)` to get `5`."
)
STEP_TIMEOUT_S = 120.0


DOWNLOAD_ID = "smollm2-135m-instruct"
DOWNLOAD_RATE_BPS = 12_000_000


def prepare_home(home: Path, model: Path) -> None:
    """A fresh app home with the model imported and settings fit for a repeatable picture.

    The file is registered as a plain local model (not as the catalog's SmolLM2), so the
    catalog entry can be shown downloading from the stand-in Hub.
    """
    os.environ["OFFLINE_ASSISTANT_HOME"] = str(home)
    os.environ["HF_HOME"] = str(home / "hf")
    from assistant.models.store import InstalledModel, ModelStore
    from assistant.paths import app_paths

    paths = app_paths().ensure()
    ModelStore(paths).register(
        InstalledModel(
            id="smollm2-135m-local",
            name="SmolLM2 135M Instruct",
            path=model,
            size_bytes=model.stat().st_size,
            source="import",
            filename=model.name,
            owned=False,
        )
    )
    paths.settings_file.write_text(
        json.dumps(
            {
                "temperature": 0.0,
                "seed": 1,
                "max_tokens": 300,
                "theme": "light",
            }
        ),
        encoding="utf-8",
    )
    # The welcome screen was seen: window state, not a preference.
    paths.state_file.write_text(json.dumps({"first_run_done": True}), encoding="utf-8")


class Director:
    """Drives the running app step by step from the GUI thread (timers, never sleeps)."""

    def __init__(self, out: Path) -> None:
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance()
        assert isinstance(app, QApplication)
        self.app = app
        self.out = out
        self.window: Any = None  # the MainWindow, once shown
        self._answered = False
        self.failed: str | None = None
        self.saved: list[Path] = []
        self.task: Any = None  # the download shown in the model manager

    # --- plumbing ----------------------------------------------------------------------------

    def wait_for(
        self,
        condition: Callable[[], bool],
        then: Callable[[], None],
        what: str,
        started: float | None = None,
    ) -> None:
        from PySide6.QtCore import QTimer

        started = time.monotonic() if started is None else started
        try:
            done = condition()
        except Exception as exc:  # report instead of hanging the script
            self.fail(f"while waiting for {what}: {exc!r}")
            return
        if done:
            QTimer.singleShot(400, lambda: self.run_step(then))  # let the last paint settle
        elif time.monotonic() - started > STEP_TIMEOUT_S:
            self.fail(f"timed out waiting for {what}")
        else:
            QTimer.singleShot(100, lambda: self.wait_for(condition, then, what, started))

    def run_step(self, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as exc:  # a broken step ends the run instead of hanging it
            import traceback

            traceback.print_exc()
            self.fail(f"{step.__name__} failed: {exc!r}")

    def fail(self, text: str) -> None:
        self.failed = text
        print(f"screenshots: {text}", file=sys.stderr)
        self.finish()

    def save(self, widget: object, name: str) -> None:
        from PySide6.QtWidgets import QWidget

        assert isinstance(widget, QWidget)
        widget.repaint()
        path = self.out / name
        if not widget.grab().save(str(path)):
            self.fail(f"could not write {path}")
            return
        self.saved.append(path)
        print(f"saved {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

    # --- the story ---------------------------------------------------------------------------

    def start(self) -> None:
        from assistant.ui.main_window import MainWindow

        def find() -> bool:
            for widget in self.app.topLevelWidgets():
                if isinstance(widget, MainWindow) and widget.isVisible():
                    self.window = widget
                    return True
            return False

        self.wait_for(find, self.wait_for_model, "the main window")

    def wait_for_model(self) -> None:
        window = self.window
        assert window is not None
        self.wait_for(
            lambda: bool(window.runner.ready), lambda: self.ask(QUESTION), "the model to load"
        )

    def ask(self, question: str) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        window = self.window
        assert window is not None
        window.composer.focus_input()
        window.composer.set_text(question)
        self._answered = False
        window.runner.answerFinished.connect(self._on_answer_finished)
        QTest.keyClick(window.composer.edit, Qt.Key.Key_Return)  # Enter sends
        self.wait_for(lambda: self._answered, self.after_answer, "the answer")

    def _on_answer_finished(self, *_args: object) -> None:
        self._answered = True

    def after_answer(self) -> None:
        window = self.window
        assert window is not None
        window.runner.answerFinished.disconnect(self._on_answer_finished)
        conversation = window.chat.conversation_id
        messages = window.history.messages(conversation) if conversation else []
        if any("```" in m.text for m in messages if m.role == "assistant"):
            self.shoot_light()
            return
        print("The model answered without a code block; seeding one and asking a follow-up.")
        seeded = window.history.create_conversation(model=window.runner.model_id)
        window.history.add_message(seeded.id, "user", QUESTION)
        window.history.add_message(seeded.id, "assistant", SEEDED_ANSWER)
        window.sidebar.refresh(select_id=seeded.id)
        window.open_conversation(seeded.id)
        self.ask(FOLLOW_UP)

    def shoot_light(self) -> None:
        from assistant.models.catalog import load_catalog

        window = self.window
        assert window is not None
        self.save(window, "chat.png")
        window.open_model_manager()
        manager = window.model_manager
        task = manager.download(load_catalog().get(DOWNLOAD_ID))

        def far_enough() -> bool:
            progress = task.last_progress
            return bool(
                progress
                and progress.total
                and progress.eta_s
                and progress.done > progress.total * 0.3
            )

        self.task = task
        self.wait_for(far_enough, self.shoot_manager_light, "the download to get going")

    def shoot_manager_light(self) -> None:
        window = self.window
        assert window is not None
        self.save(window.model_manager, "model_manager.png")
        self.task.pause()  # it stays visible, paused, for the dark picture
        window.model_manager.close()
        if not window.open_first_run():
            self.fail("the welcome screen could not be opened")
            return
        self.wait_for(
            lambda: window.first_run.isVisible(), self.shoot_first_run_light, "the welcome screen"
        )

    def shoot_first_run_light(self) -> None:
        window = self.window
        assert window is not None
        self.save(window.first_run, "first_run.png")
        window.first_run.reject()
        self.go_dark()

    def go_dark(self) -> None:
        window = self.window
        assert window is not None
        window.settings.set("theme", "dark")
        window.apply_theme()
        self.wait_for(lambda: True, self.shoot_dark, "the dark theme")

    def shoot_dark(self) -> None:
        window = self.window
        assert window is not None
        self.save(window, "chat_dark.png")
        window.open_model_manager()
        manager = window.model_manager
        manager.tabs.setCurrentIndex(2)
        manager.search_edit.setText(self.task.target.repo)
        manager.search(self.task.target.repo)
        self.wait_for(
            lambda: manager.search_table.rowCount() > 0,
            self.shoot_manager_dark,
            "the Hub search (dark)",
        )

    def shoot_manager_dark(self) -> None:
        window = self.window
        assert window is not None
        self.save(window.model_manager, "model_manager_dark.png")
        window.model_manager.close()
        window.open_first_run()
        self.wait_for(
            lambda: window.first_run.isVisible(),
            self.shoot_first_run_dark,
            "the welcome screen (dark)",
        )

    def shoot_first_run_dark(self) -> None:
        window = self.window
        assert window is not None
        self.save(window.first_run, "first_run_dark.png")
        window.first_run.reject()
        self.task.cancel()
        self.finish()

    def finish(self) -> None:
        if self.window is not None:
            self.window.close()  # saves the draft, stops the model worker
        self.app.quit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "screenshots",
        help="folder for the PNG files (default: docs/screenshots)",
    )
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        print(
            "screenshots: no display; run it as `xvfb-run -a .venv/bin/python "
            "tools/screenshots.py`",
            file=sys.stderr,
        )
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    from assistant.models.catalog import load_catalog
    from tests.hub_server import FakeHub
    from tests.support import smollm2_path

    model = smollm2_path()
    spec = load_catalog().get(DOWNLOAD_ID)
    with tempfile.TemporaryDirectory(prefix="oa-screens-") as home, FakeHub() as hub:
        hub.add_file(spec.repo, spec.filename, model)
        hub.faults.rate_bps = DOWNLOAD_RATE_BPS
        os.environ["HF_ENDPOINT"] = hub.url  # the stand-in Hub: nothing leaves this machine
        prepare_home(Path(home), model)
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication

        from assistant.ui.app import run_app

        QApplication([sys.argv[0]])
        director = Director(out)
        QTimer.singleShot(0, director.start)
        code = run_app([sys.argv[0]])
        if director.failed:
            return 1
        print(f"{len(director.saved)} screenshots in {out}")
        return code


if __name__ == "__main__":
    sys.exit(main())
