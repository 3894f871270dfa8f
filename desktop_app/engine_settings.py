"""Settings > Engine: the model runs on this computer, or on a `livecc serve` server (URL and token)."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel, QLineEdit

from desktop_app.remote_run import url_problem
from desktop_app.settings import LOCAL, SERVER, AppSettings

CHOICES = ((LOCAL, "This computer"), (SERVER, "Server"))


class EngineGroup(QGroupBox):
    def __init__(self, settings: AppSettings):
        super().__init__("Engine")
        form = QFormLayout(self)
        self.choice = QComboBox()
        for value, text in CHOICES:
            self.choice.addItem(text, value)
        self.choice.setToolTip("This computer: the model runs here (an NVIDIA GPU, or slowly on the CPU). "
                               "Server: frames go to a `livecc serve` server, which runs the model")
        form.addRow("Run the model on", self.choice)
        self.url = QLineEdit()
        self.url.setPlaceholderText("ws://127.0.0.1:8000")
        self.url.setToolTip("The server's address: ws://host:port, or wss:// behind TLS")
        form.addRow("Server URL", self.url)
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.Password)
        self.token.setPlaceholderText("the server's --token (none on a loopback server)")
        form.addRow("Token", self.token)
        self.problem = QLabel()
        self.problem.setStyleSheet("color: #c62828;")
        self.problem.hide()
        form.addRow(self.problem)
        self.choice.currentIndexChanged.connect(self._enable)
        self.url.textEdited.connect(lambda _: self.problem.hide())
        self.fill(settings)

    def fill(self, s: AppSettings) -> None:
        self.choice.setCurrentIndex(max(0, self.choice.findData(s.engine)))
        self.url.setText(s.server_url)
        self.token.setText(s.server_token)
        self._enable()

    def values(self) -> dict:
        return dict(engine=self.choice.currentData(), server_url=self.url.text().strip(),
                    server_token=self.token.text().strip())

    def check(self) -> bool:
        """False, with the reason shown under the fields, while Server has no usable URL."""
        why = url_problem(self.url.text()) if self.choice.currentData() == SERVER else None
        self.problem.setText(why or "")
        self.problem.setVisible(why is not None)
        if why:
            self.url.setFocus()
        return why is None

    def _enable(self, *_) -> None:
        server = self.choice.currentData() == SERVER
        self.url.setEnabled(server)
        self.token.setEnabled(server)
        if not server:
            self.problem.hide()
