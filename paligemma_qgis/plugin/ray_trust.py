"""Before work goes to a Ray cluster: is it trusted? Asked once per address, the answer remembered.

A Ray cluster that runs a map runs this plugin's code (and the model) on its machines and
receives the rasters: whoever controls it controls that code and sees those rasters, so it
must be trusted like code running on this computer. Empty (map here) and ``local`` (a Ray
this computer starts, on loopback) need no question. The answer is kept per address in
QgsSettings; Worker setup asks again when an address is saved there.
"""

from __future__ import annotations

import json

from qgis.core import QgsSettings
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QMessageBox, QWidget

from .worker_env import SETTINGS_GROUP

TRUST_SETTING = f"{SETTINGS_GROUP}/ray_trusted"  # JSON: {address: true | false}


def needs_trust(address: str) -> bool:
    """Whether work sent to ``address`` leaves this computer's own processes (empty/local do not)."""
    return bool(address.strip()) and address.strip() != "local"


def _answers() -> dict[str, bool]:
    try:
        answers = json.loads(QgsSettings().value(TRUST_SETTING, "{}", type=str) or "{}")
    except ValueError:
        return {}
    return {str(k): bool(v) for k, v in answers.items()} if isinstance(answers, dict) else {}


def trusted(address: str) -> bool | None:
    """True/False as answered for ``address``; None when never asked (True for empty and local)."""
    if not needs_trust(address):
        return True
    return _answers().get(address.strip())


def remember(address: str, answer: bool | None) -> None:
    """Keep the answer for ``address`` (None forgets it: the next run asks again)."""
    answers = _answers()
    if answer is None:
        answers.pop(address.strip(), None)
    else:
        answers[address.strip()] = bool(answer)
    QgsSettings().setValue(TRUST_SETTING, json.dumps(answers))


def question_text(address: str) -> str:
    return (
        f"Send the work to the Ray cluster at {address}? The cluster will run this plugin's code and "
        "receive the rasters: trust it as you would trust code running on this computer. This is asked "
        "once for this address."
    )


def trust_question(parent: QWidget | None, address: str) -> QMessageBox:
    """The question box (not shown yet: the caller opens it and reads ``clickedButton``)."""
    box = QMessageBox(parent)
    box.setObjectName("paligemmaRayTrust")
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("PaliGemma Water — Ray cluster")
    box.setTextFormat(Qt.TextFormat.PlainText)  # paths and names are user data, never HTML
    box.setText(question_text(address))
    box.setInformativeText(
        "Map on this computer instead: empty the Ray address in Worker setup (or set it to 'local')."
    )
    box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
    box.button(QMessageBox.StandardButton.Yes).setText("Trust it and send the work")
    box.button(QMessageBox.StandardButton.No).setText("Do not send")
    box.setDefaultButton(QMessageBox.StandardButton.No)
    return box


def refused_text(address: str, option: str = "the Ray address in Worker setup") -> str:
    """Why a run does not go to ``address`` (declined, or never confirmed where no one can be asked)."""
    if trusted(address) is False:
        return (
            f"The Ray cluster at {address} is not trusted (your answer when asked): nothing was sent. "
            f"Change {option}, or save the address again in Worker setup to be asked again."
        )
    return (
        f"The Ray cluster at {address} has not been confirmed as trusted yet: nothing was sent. Save the "
        "address in Worker setup (Raster ▸ PaliGemma Water) to confirm it once."
    )
