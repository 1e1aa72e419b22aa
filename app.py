"""Streamlit demo (placeholder page until the demo issue lands): lists the model registry."""
import streamlit as st

st.set_page_config(page_title="CNN mobile pipeline", layout="wide")
st.title("CNN mobile pipeline")
st.write("Train a CNN, export verified TFLite/ONNX files, and try them here. "
         "The interactive demo is not built yet; run `make run` for the current main job.")
