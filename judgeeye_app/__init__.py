"""JudgeEye's Streamlit app: a thin layer of pages over the ``judgeeye`` library.

``main.py`` is the entry script (``judgeeye app`` runs it), ``views/`` holds one file per page
and ``ui/`` the widgets pages share. The library never imports this package or streamlit.
"""

from pathlib import Path

#: the script `streamlit run` starts
ENTRY_SCRIPT = Path(__file__).resolve().parent / "main.py"
