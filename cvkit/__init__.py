"A notebook-first kit for learning and experimenting with training computer-vision models."
__version__ = "0.1.0"
