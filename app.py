"""UPD explorer: the Streamlit entry point. Navigation only; every page lives in pages/.

Run:  streamlit run app.py --server.address 127.0.0.1   (or `make run`)
"""
from __future__ import annotations

import streamlit as st

from pages._common import app_pages, run_page

st.set_page_config(page_title="UPD explorer", page_icon=":material/radiology:", layout="wide",
                   menu_items={"About": "UPD explorer: unsupervised pathology detection, compared and explained. "
                                        "Research and teaching software, not a medical device."})

page = st.navigation(app_pages())
st.sidebar.caption("Research and teaching software — **not a medical device**.")
run_page(page)
