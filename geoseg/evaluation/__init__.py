"""Scoring prediction folders, figures, and the demo's report over seeds."""
