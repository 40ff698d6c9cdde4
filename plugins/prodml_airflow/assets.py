"""Assets shared between DAGs: the champion model moves → batch prediction reruns."""

from airflow.sdk import Asset

CHAMPION = Asset(name="prodml_champion_model", uri="prodml://registry/champion")
