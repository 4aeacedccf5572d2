"""Files through Spark's Hadoop configuration: any scheme the session reaches (local, s3a, abfss, dbfs)."""
from __future__ import annotations

from pyspark.sql import SparkSession


def hadoop_file_system(spark: SparkSession, path: str):
    """``(FileSystem, Path)`` of ``path`` through Spark's Hadoop configuration."""
    hadoop_path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hadoop_path


def read_bytes(spark: SparkSession, path: str) -> bytes:
    """The content of the file at ``path`` (small files: lock files, Delta commits)."""
    fs, hadoop_path = hadoop_file_system(spark, path)
    stream = fs.open(hadoop_path)
    try:
        return bytes(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()
