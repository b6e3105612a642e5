"""`streamlit run app.py` in a source checkout: the app itself is the installed `judgeeye_app`
package (`judgeeye app` runs it without a checkout)."""

from judgeeye_app.main import run

run()
