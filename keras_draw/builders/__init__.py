"""tensorflow-datasets builders of the data sets that keras_draw makes itself, from MNIST's files.

Importing a builder module registers its data set with tfds (`tfds.builder(name)`); the module
imports tensorflow_datasets, so `keras_draw.data_sources` imports it only when the data set is
asked for.
"""
