"""Write without attention (eq. 18)."""

import keras
from keras import ops

from keras_draw.layers.validation import check_positive


@keras.saving.register_keras_serializable(package="keras_draw")
class Write(keras.layers.Layer):
    """write(h^dec_t) = W(h^dec_t) (eq. 18): a linear map onto the whole canvas.

    Returns the canvas update, shape (batch, B, A, C).
    """

    def __init__(self, image_height, image_width, channels, **kwargs):
        super().__init__(**kwargs)
        check_positive(image_height=image_height, image_width=image_width, channels=channels)
        # === Layers ===
        self.dense = keras.layers.Dense(image_height * image_width * channels, name="canvas", dtype=self.dtype_policy)
        # === Config ===
        self.image_height = image_height
        self.image_width = image_width
        self.channels = channels

    def build(self, h_dec_shape):
        self.dense.build(h_dec_shape)

    def call(self, h_dec):
        update = self.dense(h_dec)  # eq. 18, (batch, B·A·C)
        return ops.reshape(update, (-1, self.image_height, self.image_width, self.channels))

    def compute_output_shape(self, h_dec_shape):
        return (h_dec_shape[0], self.image_height, self.image_width, self.channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            image_height=self.image_height, image_width=self.image_width, channels=self.channels
        )
        return config
