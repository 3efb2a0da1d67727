"""The Hugging Face token for gated models (Google's PaliGemma): kept in QGIS's authentication database.

Google's PaliGemma models are gated: a download needs an account that accepted the licence
and its access token. Worker setup takes the token into QGIS's authentication database
(QgsAuthManager: encrypted with the master password, never a plain file, never QgsSettings),
and a run that needs the model gets it as ``HF_TOKEN`` in the worker's environment, for that
run only; it is never logged or shown. QgsSettings keeps only the id of the stored config.
"""

from __future__ import annotations

from qgis.core import QgsApplication, QgsAuthMethodConfig, QgsSettings
from qgis.PyQt.QtWidgets import QHBoxLayout, QLineEdit, QToolButton, QWidget

from .worker_env import SETTINGS_GROUP

AUTHCFG_SETTING = f"{SETTINGS_GROUP}/hf_authcfg"
CONFIG_NAME = "PaliGemma Water: Hugging Face token"
TOKEN_URL = "https://huggingface.co/settings/tokens"


def _manager():
    manager = QgsApplication.authManager()
    return None if manager is None or manager.isDisabled() else manager


def _result(value, config):
    """PyQGIS 3.22 returns (ok, config) where later versions return ok."""
    return value if isinstance(value, tuple) else (value, config)


def stored_id() -> str:
    """The id of the stored token's config ('' when none is stored)."""
    authcfg = str(QgsSettings().value(AUTHCFG_SETTING, "", type=str) or "")
    manager = _manager()
    if not authcfg or manager is None or authcfg not in manager.configIds():
        return ""
    return authcfg


def store_token(token: str) -> str | None:
    """Store ``token`` (replacing the stored one); None when done, else why not.

    QGIS asks for its master password first when it has none in this session.
    """
    token = token.strip()
    if not token:
        return "the token is empty"
    manager = _manager()
    if manager is None:
        return "QGIS's authentication database is not available"
    if not manager.setMasterPassword(True):
        return "QGIS's master password was not given: the token was not stored"
    config = QgsAuthMethodConfig("Basic")
    config.setName(CONFIG_NAME)
    config.setUri("https://huggingface.co")
    config.setConfig("username", "huggingface")
    config.setConfig("password", token)
    existing = stored_id()
    if existing:
        config.setId(existing)
        ok = bool(manager.updateAuthenticationConfig(config))
    else:
        ok, config = _result(manager.storeAuthenticationConfig(config), config)
    if not ok or not config.id():
        return "QGIS's authentication database did not accept the token"
    QgsSettings().setValue(AUTHCFG_SETTING, config.id())
    return None


def load_token() -> str | None:
    """The stored token, or None (none stored, or the master password was not given)."""
    authcfg = stored_id()
    manager = _manager()
    if not authcfg or manager is None:
        return None
    config = QgsAuthMethodConfig()
    ok, config = _result(manager.loadAuthenticationConfig(authcfg, config, True), config)
    token = config.config("password") if ok else ""
    return token or None


def forget_token() -> None:
    """Remove the stored token from the authentication database."""
    authcfg = stored_id()
    manager = _manager()
    if authcfg and manager is not None:
        manager.removeAuthenticationConfig(authcfg)
    QgsSettings().remove(AUTHCFG_SETTING)


def run_env(uses_model: bool) -> dict[str, str]:
    """What a run adds to the worker's environment: ``HF_TOKEN`` when it may download the model."""
    if not uses_model:
        return {}
    token = load_token()
    return {"HF_TOKEN": token} if token else {}


class TokenField(QWidget):
    """Worker setup's row: the token (typed hidden, never shown again), and Forget when one is stored."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.edit = QLineEdit()
        self.edit.setObjectName("paligemmaHfToken")
        self.edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.edit.setToolTip(
            "A Hugging Face access token (read access), for Google's gated PaliGemma models: accept a "
            f"model's licence on its page with your account, then make a token at {TOKEN_URL}. Saved in "
            "QGIS's authentication database (protected by its master password), given to the worker only "
            "for runs that download the model."
        )
        self.forget_button = QToolButton()
        self.forget_button.setText("Forget")
        self.forget_button.setToolTip("Remove the stored token from QGIS's authentication database")
        self.forget_button.clicked.connect(self.forget)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.forget_button)
        self._update()

    def _update(self) -> None:
        stored = bool(stored_id())
        self.edit.setPlaceholderText(
            "stored in QGIS's password store (type a new one to replace it)"
            if stored
            else "hf_… (for Google's gated PaliGemma models; optional)"
        )
        self.forget_button.setVisible(stored)

    def forget(self) -> None:
        forget_token()
        self._update()

    def save(self) -> str | None:
        """Store what was typed (nothing typed: nothing changes); None when done, else why not."""
        text = self.edit.text().strip()
        if not text:
            return None
        problem = store_token(text)
        if problem is None:
            self.edit.clear()
        self._update()
        return problem
