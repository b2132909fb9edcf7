"""Where runs are reported besides Prefect: MLflow runs and models of every flow, and
FiftyOne datasets of a workspace's images, labels and scores."""
