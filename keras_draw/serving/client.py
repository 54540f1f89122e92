"""A client of a DRAW or DrawClassifier served by TensorFlow Serving, over REST (default) or gRPC.

    from keras_draw.serving import Client
    client = Client("http://localhost:8501")             # or Client(grpc="localhost:8500")
    images = client.generate(16, seed=7)                 # numpy (16, H, W, C) in [0, 1]
    outputs = client.predict("generate", noise=noise)    # any signature: {output name: numpy array}

Row i of a request with `seed=S` uses the seed S + i (S = 0 by default), so the same seed gives
the same images. REST needs numpy and the standard library only, no TensorFlow; gRPC needs
tensorflow-serving-api too (keras_draw.serving.transports). A failed request raises
`ServingError` with a one-line message.
"""

import numpy as np

from keras_draw.serving.transports import grpc_predict, rest_predict

DEFAULT_URL = "http://localhost:8501"


class Client:
    """A DRAW served by TF Serving: REST at `url`, or gRPC at `grpc` ("host:port") if given."""

    def __init__(self, url=DEFAULT_URL, model_name="draw", version=None, grpc=None, timeout=30.0, rows=False):
        self.url = url
        self.model_name = model_name
        self.version = version
        self.grpc = grpc
        self.timeout = timeout
        self.rows = rows

    def predict(self, signature, **inputs):
        """Any signature (export/README.md): {output name: numpy array}."""
        if self.grpc:
            return grpc_predict(self.grpc, self.model_name, signature, inputs, self.version, self.timeout)
        return rest_predict(self.url, self.model_name, signature, inputs, self.version, self.timeout, self.rows)

    def generate(self, num_images, seed=0):
        """`num_images` generated images (num_images, H, W, C) in [0, 1]; row i from the seed `seed` + i."""
        return self.predict("generate_seeded", seed=row_seeds(num_images, seed))["images"]

    def draw(self, num_images, seed=0):
        """Generation with every step: images, canvases, write_window and write_box."""
        return self.predict("draw_seeded", seed=row_seeds(num_images, seed))

    def reconstruct(self, images, seed=0):
        """Reconstructions of `images` (count, H, W, C) in [0, 1], canvases, windows and boxes."""
        images = np.asarray(images, np.float32)
        return self.predict("reconstruct_seeded", images=images, seed=row_seeds(len(images), seed))

    def elbo(self, images, seed=0):
        """Per-image loss (the negative ELBO), reconstruction_loss and kl_loss, in nats."""
        images = np.asarray(images, np.float32)
        return self.predict("elbo_seeded", images=images, seed=row_seeds(len(images), seed))

    def classify(self, images):
        """A DrawClassifier's `probabilities` (count, classes) of `images` and their `classes` (count,)."""
        return self.predict("classify", images=np.asarray(images, np.float32))


def row_seeds(count, seed=0):
    """The seeds of `count` rows: seed, seed + 1, ..."""
    return np.arange(seed, seed + count, dtype=np.int64)
