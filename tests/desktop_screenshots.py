"""Screenshots of the desktop app for docs/images/ and resources/screenshot.png, made offscreen with
widget.grab(): PYTHONPATH=. QT_QPA_PLATFORM=offscreen python tests/desktop_screenshots.py . (it writes
/tmp/shots/out; copy what changed). A scripted session stands in for the model's commentary: the
tiny random model writes gibberish. Not a test (no test_ prefix)."""
import sys, threading, time
from pathlib import Path
ROOT = Path(sys.argv[1]); sys.path.insert(0, str(ROOT / "tests"))
import numpy as np
from PySide6.QtCore import QSettings
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QApplication
from desktop_app.main import create_application
from desktop_app.main_window import MainWindow
from engine import Answer, Commentary, Compaction, Stats
from engine.model.tiny import make_tiny_model
from videos import write_video

OUT = Path("/tmp/shots/out"); OUT.mkdir(exist_ok=True)
tiny = Path("/tmp/shots/tiny-qwen2-vl")
if not tiny.exists():
    make_tiny_model(tiny)
video = Path("/tmp/shots/match.mp4")
if not video.exists():
    write_video(video, seconds=120, fps=25, width=640, height=360)

LINES = ["A red ball rolls in from the left", "and a blue square follows it across the field.",
         "The ball speeds up near the centre,", "the square keeps its distance behind it.",
         "Now a green circle enters at the top,", "all three shapes move to the right.",
         "The ball bounces off the edge", "and turns back towards the square.",
         "The circle slows down in the corner.", "The square catches up with the ball."]

class Scripted:
    """A stand-in session with scripted, readable commentary on the real video (the tiny random
    model writes gibberish), the real status events, and an answer that recalls a moment."""
    def __init__(self, loaded, config):
        self.stop_event, self.questions, self.seek_to = threading.Event(), [], None
    def run(self, buffer):
        chunk, t_next = 0, 1.0
        while not self.stop_event.is_set():
            _, frame = buffer.preview()
            now = frame.timestamp if frame is not None else 0.0
            if now >= t_next:
                yield Commentary(t_next - 1, t_next, LINES[chunk % len(LINES)], chunk)
                yield Stats(chunk, t_next - 1, t_next, 4, 60, 90, 180, 12, 900 + 150 * chunk, 4096, 120, 0, 0,
                            compactions=chunk // 6, memory_key_frames=2 * chunk, memory_mb=0.4 * chunk)
                if chunk == 6:
                    yield Compaction(t_next, 3900, 1800, 85.0)
                chunk += 1
                t_next += 1.0
            if self.questions:
                q = self.questions.pop(0)
                thumb = np.ascontiguousarray(frame.image[::8, ::8]) if frame is not None else np.zeros((45, 80, 3), np.uint8)
                for words in ("A red", "A red ball, chased by", "A red ball, chased by a blue square."):
                    yield Answer(q, words, words.endswith("."), now, ((2.0, 4.0),), (thumb,))
            time.sleep(0.05)
    def ask(self, q): self.questions.append(q)
    def set_query(self, q): pass
    def seek(self, s, fn): fn(s)
    def stop(self): self.stop_event.set()
    def answer(self, q): yield Answer(q, "…", True, 0.0)

def pump(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents(); time.sleep(0.02)

def save(pixmap, name):
    path = OUT / name
    pixmap.save(str(path))
    print(name, pixmap.width(), pixmap.height(), path.stat().st_size)

app = create_application()
store = QSettings("/tmp/shots/s.ini", QSettings.IniFormat); store.clear()
store.setValue("engine/voice", "espeak")
w = MainWindow(store, model_override=str(tiny), sessions_dir=Path("/tmp/shots/sessions"),
               session_factory=Scripted, probe_devices=False)
w.resize(1280, 760); w.show()
while w.loaded is None: pump(0.2)
w.picker.set_devices([(0, "Integrated Camera")], [{"index": 1, "left": 0, "top": 0, "width": 1920, "height": 1080}])
w.open_file(str(video))
pump(9.0)
w.question_edit.setText("What is chasing the ball?"); w.ask_question()
pump(3.0)
w.question_edit.setText("Where did the circle go?")
w.statusBar().clearMessage(); pump(0.2)
# 1: the main window with the View menu open (the seek bar below the video)
bar = w.menuBar(); view_action = bar.actions()[2]; menu = view_action.menu()
menu.popup(bar.mapToGlobal(bar.actionGeometry(view_action).bottomLeft())); pump(0.5)
shot = w.grab(); p = QPainter(shot); p.drawPixmap(w.mapFromGlobal(menu.pos()), menu.grab()); p.end()
menu.close()
save(shot, "screenshot.png")
# 2: the status bar at 1280 px with a message read in full
w.statusBar().showMessage("Context compacted: 3900 → 1800 tokens (85 ms)", 60000); pump(0.3)
save(w.grab(), "desktop-status-1280.png")
w.statusBar().clearMessage()
# 3: Help > Keyboard shortcuts
w.help.show_shortcuts(); pump(0.3)
save(w.help.shortcuts_dialog.grab(), "desktop-shortcuts.png")
w.help.shortcuts_dialog.close()
# 4: a recalled moment's preview
w.moments.open(2.0, 4.0); pump(0.3)
save(w.moments.preview.grab(), "desktop-moment-preview.png")
w.moments.preview.close()
# 5: large captions fit the video
for _ in range(5): w.viewing.resize_captions(+1)
pump(1.0)
save(w.video_view.grab(), "desktop-captions-large.png")
for _ in range(5): w.viewing.resize_captions(-1)
w.close()
# 7: Speak asks before downloading ChatTTS
import huggingface_hub.constants as hc; hc.HF_HUB_CACHE = "/tmp/shots/empty-cache"
store2 = QSettings("/tmp/shots/s2.ini", QSettings.IniFormat); store2.clear()
w2 = MainWindow(store2, model_override=str(tiny), sessions_dir=Path("/tmp/shots/sessions"), autoload=False,
                probe_devices=False)
w2.resize(1280, 760); w2.show(); w2.speak_action.trigger(); pump(0.5)
save(w2.grab(), "desktop-speech-consent.png")
w2.close()
# 8: Settings > Engine > Server
from desktop_app.settings import AppSettings
from desktop_app.settings_dialog import SettingsDialog
dialog = SettingsDialog(AppSettings(engine="server", server_url="ws://gpu-box.local:8000", server_token="s3cret",
                                    model=str(tiny)), devices=[])
dialog.show(); pump(0.3)
save(dialog.grab(), "desktop-settings-engine.png")
dialog.close()
# 9: captioning over a server: `livecc serve`'s app under uvicorn here, with the tiny model (its words are random)
from engine.model.loading import load_model
from servers import running_server
store3 = QSettings("/tmp/shots/s3.ini", QSettings.IniFormat); store3.clear()
with running_server(load_model(str(tiny)), tiny) as (url, _):
    AppSettings(engine="server", server_url=url, max_pixels=200 * 28 * 28).save(store3)
    w3 = MainWindow(store3, sessions_dir=Path("/tmp/shots/sessions"), probe_devices=False)
    w3.resize(1280, 760); w3.show()
    w3.open_file(str(video))
    while len([e for e in w3.transcript.entries if e.kind == "commentary"]) < 6: pump(0.2)
    w3.question_edit.setText("What is chasing the ball?"); w3.ask_question()
    while not any(e.kind == "answer" and e.done for e in w3.transcript.entries): pump(0.2)
    pump(2.5); w3.statusBar().clearMessage(); pump(0.2)
    save(w3.grab(), "desktop-server.png")
    w3.close()
