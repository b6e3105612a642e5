"""Codebook refinement from inferred traces (paper section 3.2): instruction refinement, critique
extraction, embeddings, clustering, the critique map, rubric refinement, and measured comparison
of codebook versions."""

from judgeeye.refine.cluster import Clustering, choose_k, cluster_level
from judgeeye.refine.critiques import MapPoint, critique_jobs, map_points, parse_critiques
from judgeeye.refine.embed import EMBEDDED, embed_texts, embedded_model_dir
from judgeeye.refine.llm import BadAnswer, RefinementError
from judgeeye.refine.project2d import project_2d
from judgeeye.refine.settings import MODES, ORIGINS, RefineSettings
from judgeeye.refine.traces import TraceRow, TraceSet, TraceSourceError, load_trace_set, select_per_level

__all__ = [
    "EMBEDDED", "MODES", "ORIGINS", "BadAnswer", "Clustering", "MapPoint", "RefineSettings", "RefinementError",
    "TraceRow", "TraceSet", "TraceSourceError", "choose_k", "cluster_level", "critique_jobs", "embed_texts",
    "embedded_model_dir", "load_trace_set", "map_points", "parse_critiques", "project_2d", "select_per_level",
]
