"""Expected speed where the choice is made: the model manager and the welcome screen."""

from __future__ import annotations

import re

from pytestqt.qtbot import QtBot

from assistant.models.catalog import load_catalog
from assistant.models.hardware import GIB, Hardware
from assistant.models.speed import MachineProfile, SpeedEstimator, fingerprint
from assistant.models.store import ModelStore
from assistant.paths import app_paths
from assistant.ui.first_run import FirstRunDialog
from assistant.ui.model_manager import ModelManagerWindow

HW = Hardware(
    total_ram=32 * GIB,
    available_ram=24 * GIB,
    physical_cores=2,
    logical_cores=2,
    gpu_offload=False,
)


def _estimator(read_gbps: float) -> SpeedEstimator:
    profile = MachineProfile(
        read_gbps_1=read_gbps,
        read_gbps_n=read_gbps,
        threads=2,
        gflops_1=40.0,
        measured_at=1.0,
        fingerprint=fingerprint(HW),
    )
    return SpeedEstimator(HW, profile)


def test_the_catalog_and_welcome_screen_show_speed_and_follow_a_new_measurement(
    qtbot: QtBot,
) -> None:
    catalog = load_catalog()
    store = ModelStore(app_paths().ensure(), catalog=catalog)
    slow, fast = _estimator(2.0), _estimator(60.0)
    manager = ModelManagerWindow(store, catalog, HW, speeds=slow)
    qtbot.addWidget(manager)
    manager.show()
    for spec in catalog:
        label = manager.speed_label(spec.id)
        assert re.fullmatch(r"≈ [\d.]+ tokens/s here", label.text())
        assert "tokens a second" in label.accessibleName()
    slow_pick = manager.recommended_id
    assert slow_pick is not None and "tokens/s here" in manager.summary.text()

    dialog = FirstRunDialog(store, catalog, HW, downloads=manager.downloads, speeds=slow)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.spec is not None and dialog.spec.id == slow_pick
    # Name, fit and speed are shown once (name, badge, speed label); the sentence says why.
    assert dialog.speed.text() == manager.speed_label(slow_pick).text()
    assert dialog.reason.text() == (
        "The most capable model in the catalog that fits this computer and answers at a "
        "comfortable speed (at least 10 tokens/s)."
    )

    # The machine turns out faster: both offer a more capable model.
    manager.set_speeds(fast, 10.0)
    dialog.set_speeds(fast, 10.0)
    assert manager.recommended_id != slow_pick and dialog.spec.id == manager.recommended_id
    first = manager.catalog_table.item(0, 0)
    assert first is not None and first.text().startswith("★ ")
    assert dialog.reason.text() == (
        "The most capable model in the catalog that fits this computer and answers at a "
        "comfortable speed (at least 10 tokens/s)."
    )

    # A machine too slow for every model: the fastest that fits, and it says so.
    dialog.set_speeds(_estimator(0.02), 10.0)
    assert dialog.spec is not None and dialog.fits and not dialog.advice.usable
    assert dialog.reason.text() == (
        "No model answers at a comfortable speed here (at least 10 tokens/s): this is the "
        "fastest that fits."
    )
    dialog.close()
    assert manager.downloads.shutdown(timeout_s=20)


def test_a_computer_too_small_for_every_model_is_told_what_to_expect(qtbot: QtBot) -> None:
    tiny = Hardware(
        total_ram=GIB // 4, available_ram=GIB // 8, physical_cores=1, logical_cores=1,
        gpu_offload=False,
    )  # fmt: skip
    catalog = load_catalog()
    store = ModelStore(app_paths().ensure(), catalog=catalog)
    dialog = FirstRunDialog(store, catalog, tiny, speeds=SpeedEstimator(tiny))
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.spec is not None and not dialog.fits
    assert dialog.spec == min(catalog, key=lambda spec: (spec.size_bytes, spec.id))
    assert dialog.reason.text() == "Memory will be tight: close other programs while it answers."
    dialog.close()
    assert dialog.downloads.shutdown(timeout_s=20)
