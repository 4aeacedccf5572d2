"""spark-submit entry point for train (same arguments as ``pipeline train``).

    spark-submit --packages io.delta:delta-spark_2.13:4.0.1 jobs/train.py --conf conf/F.yaml --start D1 --end D2 --model esmm
    spark-submit --packages io.delta:delta-spark_2.13:4.0.1 jobs/train.py --conf conf/F.yaml --date D   (the plan's window of night D)
"""
import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
