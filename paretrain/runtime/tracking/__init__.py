"""MLflow: the batched, non-blocking, spooled client; plans, searches and runs as MLflow runs;
comparisons of predicted against realized, and their plots.
"""
