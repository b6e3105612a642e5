"""JudgeEye: LLM raters that agree with humans.

The library behind the app and the `judgeeye` command. It never imports streamlit.
"""

__version__ = "0.1.0"
