"""Issue 20 item 7: what the worker prints is checked before the plugin believes it, and what the
message bar shows is escaped. Real headless QGIS; the 'workers' are small scripts."""

from __future__ import annotations

import json
import sys

import pytest
from qgis.core import Qgis
from qgis.gui import QgsMessageBar
from qgis.PyQt.QtWidgets import QApplication, QMessageBox, QPushButton, QTextBrowser, QWidget

from paligemma_qgis.plugin.events import parse_line, problem
from paligemma_qgis.plugin.messages import (
    bar_texts,
    drop_task_notices,
    plugin_messages,
    push_item,
    push_message,
    shown_text,
)
from paligemma_qgis.plugin.runner import run_worker
from paligemma_qgis.plugin.task import WorkerTask


def _event(**fields) -> str:
    return json.dumps(fields)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (_event(event="progress", done="3", total=10), "field 'done' is str"),
        (_event(event="progress", done=True, total=10), "field 'done' is bool"),
        (_event(event="result", scenes=[1, 2], polygons=3), "field 'scenes' is list"),
        (_event(event="result", details={"failed_scenes": ["a", "b"]}), "details.failed_scenes is list"),
        (_event(event="result", details={"resumed": "yes"}), "details.resumed is str"),
        (_event(event="error", message=["x"]), "field 'message' is list"),
        (_event(event="error", params={"failed_scenes": "a"}, message="m"), "params.failed_scenes is str"),
        (_event(event="error"), "error event without a message"),
        (_event(event="cancelled", kept={"scenes": "12"}), "kept.scenes is str"),
        (_event(event="launch", message="x"), "unknown event 'launch'"),
    ],
)
def test_malformed_events_are_named(line, why):
    event = parse_line(line)
    assert event is not None
    assert why in problem(event, "segment")


def test_good_events_of_every_task_pass():
    assert problem(parse_line(_event(event="progress", done=3, total=10, message="chips")), "segment") is None
    segment = _event(event="result", scenes=5, failed=2, polygons=7, water_area_km2=1.5, device=None,
                     details={"failed_scenes": {"a": "cannot open"}, "resumed": True, "scenes_from_journal": 2})  # fmt: skip
    assert problem(parse_line(segment), "segment") is None
    # change's "polygons" is a dict, segment's a count: each task is checked against its own fields
    change = _event(event="result", polygons={"gained": 1}, areas_m2={"gained": 2.0}, notes=[])
    assert problem(parse_line(change), "change") is None
    assert problem(parse_line(change), "segment") is not None
    assert parse_line("not json") is None and parse_line('{"no": "event"}') is None


MALFORMED_WORKER = r"""
import json, sys
sys.stdin.readline()
print(json.dumps({"event": "progress", "done": "half", "total": 10}), flush=True)
print(json.dumps({"event": "progress", "done": 5, "total": 10, "message": "chips"}), flush=True)
print(json.dumps({"event": "result", "scenes": "many", "details": {"failed_scenes": [1]}}), flush=True)
print(json.dumps({"event": "result", "scenes": 2, "failed": 1, "polygons": 3,
                  "details": {"failed_scenes": {"<img src=x onerror=alert(1)>": "cannot open"}}}), flush=True)
"""


def test_a_malformed_event_is_logged_and_ignored(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(MALFORMED_WORKER)
    progress = []
    outcome = run_worker(
        {"task": "segment", "options": {"output": str(tmp_path / "w.gpkg")}},
        [sys.executable, str(script)],
        on_progress=lambda done, total, message: progress.append((done, total, message)),
    )
    assert progress == [(5, 10, "chips")]  # the bad one never reached the task
    assert outcome.ok and outcome.result["scenes"] == 2  # the good result, not the malformed one
    ignored = [line for line in outcome.log if line.startswith("ignored a malformed worker event")]
    assert len(ignored) == 2 and "'done' is str" in ignored[0] and "'scenes' is str" in ignored[1]


def test_finished_never_raises_on_the_gui_thread(tmp_path, qgis_iface, clean_project, monkeypatch):
    """Even a result the checks let through that the code cannot show ends as a message, not an
    exception inside QGIS."""
    task = WorkerTask("Water in lakes", {"task": "segment", "options": {}}, iface=qgis_iface)
    from paligemma_qgis.plugin import task as task_module
    from paligemma_qgis.plugin.runner import WorkerOutcome

    def broken(_summary):
        raise TypeError("boom")

    monkeypatch.setattr(task_module, "describe_summary", broken)
    task.outcome = WorkerOutcome(status="ok", result={"scenes": 1})
    task.finished(True)  # must not raise
    assert task.finished_called and task.succeeded is False
    assert any("could not show the result" in m for m in plugin_messages(qgis_iface))


def test_the_message_bar_shows_names_as_text_not_html(qgis_iface):
    bar = qgis_iface.messageBar()
    bar.clearWidgets()
    name = "<img src='http://evil.example/x.png'><b>lakes</b> & co"
    item = push_message(qgis_iface, f"Water in {name}: 3 water polygons.", Qgis.MessageLevel.Success)
    browser = item.findChild(QTextBrowser)
    assert browser is not None
    shown = browser.toPlainText()
    assert name in shown  # literally, tags and all
    assert "<img" not in browser.toHtml().replace("&lt;img", "")  # nothing rendered as an image
    assert plugin_messages(qgis_iface)[0] == f"Water in {name}: 3 water polygons."
    bar.clearWidgets()


def test_long_text_shows_one_line_and_details_holds_it_whole(qgis_iface):
    holder = QWidget()
    bar = QgsMessageBar(holder)
    text = "First sentence that says what happened. " + "Then a long explanation " * 20 + "\nsecond line"
    shown, cut = shown_text(text)
    assert cut and len(shown) <= 150 and shown.endswith("…") and "\n" not in shown
    item = push_item(bar, "Cannot run", text, Qgis.MessageLevel.Warning, details="worker output")
    assert bar_texts(bar) == [text]
    (details,) = [b for b in item.findChildren(QPushButton) if b.objectName() == "paligemmaDetails"]
    details.click()
    QApplication.processEvents()
    (box,) = [
        w for w in QApplication.topLevelWidgets() if w.objectName() == "paligemmaDetailsBox" and w.isVisible()
    ]
    assert isinstance(box, QMessageBox) and box.text() == text and box.detailedText() == "worker output"
    box.close()
    short = push_item(bar, "", "Short.", Qgis.MessageLevel.Info)
    assert not [b for b in short.findChildren(QPushButton) if b.objectName() == "paligemmaDetails"]
    holder.deleteLater()


def test_qgis_task_notices_of_our_tasks_leave_the_bar(qgis_iface):
    """QGIS 3.22 pushes "Task failed: <description>" when a long task ends without success, a
    cancel included; the plugin's own message says what happened, QGIS's leaves."""
    bar = qgis_iface.messageBar()
    bar.clearWidgets()
    for title, text in (("Task failed", "Water in lakes"), ("Task complete", "Another plugin's task")):
        bar.pushWidget(QgsMessageBar.createMessage(title, text, bar), Qgis.MessageLevel.Info, 0)
    push_message(
        qgis_iface, "Stopped: 2 of 3 scenes are kept.", Qgis.MessageLevel.Info, title="Water in lakes"
    )
    assert drop_task_notices(qgis_iface, "Water in lakes") == 1
    texts = bar_texts(bar)
    assert "Water in lakes" not in texts and "Another plugin's task" in texts
    assert "Stopped: 2 of 3 scenes are kept." in texts
    bar.clearWidgets()


@pytest.mark.parametrize("width", [700, 1000, 1366])
def test_a_shown_bar_item_needs_no_scroll_arrows(width):
    """Issue 21: message bars too small for their text showed scroll arrows. One line, elided to the
    bar's width, the rest behind Details…"""
    holder = QWidget()
    holder.resize(width, 200)
    bar = QgsMessageBar(holder)
    bar.resize(width, 40)
    holder.show()
    text = "Water in 2 rasters and more_tiles: Continued: 1 scene was already done. 4 scenes, 713 water " \
           "polygons, 5.934 km² of water, 24 chips, 12.7 s on cpu (2 threads)."  # fmt: skip
    item = push_item(bar, "Water in 2 rasters and more_tiles", text, Qgis.MessageLevel.Success)
    for _ in range(5):
        QApplication.processEvents()
    browser = item.findChild(QTextBrowser)
    assert browser.verticalScrollBar().maximum() == 0, browser.toPlainText()
    assert bar_texts(bar) == [text]
    holder.close()
    holder.deleteLater()
