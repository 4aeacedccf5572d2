"""spark-submit entry point for score (same arguments as ``pipeline score``).

    spark-submit --packages io.delta:delta-spark_2.13:4.0.1 jobs/score.py --conf conf/F.yaml --date D [--model-id M]
"""
import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
