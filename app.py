"""Streamlit demo of the exported models:  streamlit run app.py [-- --runs DIR]

Everything happens in serving/demo/page.py (tested in tests/test_app.py); this file only
hands over the command-line arguments and where runs/ and samples/ are.
"""
import sys
from pathlib import Path

from serving.demo.page import main

main(sys.argv[1:], app_dir=Path(__file__).resolve().parent)
