"""UPD explorer: the Streamlit entry point. Navigation only; every page lives in pages/.

Run:  streamlit run app.py --server.address 127.0.0.1   (or `make run`)
"""
from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="UPD explorer", page_icon=":material/radiology:", layout="wide",
                   menu_items={"About": "UPD explorer: unsupervised pathology detection, compared and explained. "
                                        "Research and teaching software, not a medical device."})

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True, url_path="home"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:", url_path="compare"),
    st.Page("pages/upload.py", title="Upload", icon=":material/upload_file:", url_path="upload"),
    st.Page("pages/tails.py", title="Tails", icon=":material/area_chart:", url_path="tails"),
    st.Page("pages/myth.py", title="Myth", icon=":material/science:", url_path="myth"),
    st.Page("pages/lesion_lab.py", title="Lesion lab", icon=":material/target:", url_path="lesion_lab"),
    st.Page("pages/benchmarks.py", title="Benchmarks", icon=":material/table_chart:", url_path="benchmarks"),
]

page = st.navigation(PAGES)
st.sidebar.caption("Research and teaching software — **not a medical device**.")
page.run()
