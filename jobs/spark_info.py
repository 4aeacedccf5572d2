"""spark-submit entry point: print the session's key settings (a cluster smoke test).

    spark-submit --packages io.delta:delta-spark_2.13:4.0.1 jobs/spark_info.py --conf conf/F.yaml
"""
import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["spark-info", *sys.argv[1:]]))
