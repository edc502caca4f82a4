class UPDError(Exception): """Base class of the project's errors."""
class ImageError(UPDError, ValueError): """An input cannot be turned into a sensible image; message is for a person (clinician)."""
class CheckpointError(UPDError): """A checkpoint is missing, tampered with, truncated or incompatible."""
class DataError(UPDError, ValueError): """A dataset folder/CSV is missing or malformed."""
