"""Assets shared between DAGs: the champion model moves → batch prediction reruns."""

from airflow.sdk import Asset

# No URI scheme on purpose: a scheme makes Airflow load every provider's URI normaliser at parse
# time (the Google one imports google.cloud.storage, ~0.9 s).
CHAMPION = Asset(name="prodml_champion_model")
