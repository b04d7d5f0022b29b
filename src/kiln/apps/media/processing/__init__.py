"""The processing pipeline: the `media.process` job, its status transitions (grouped commits),
decoding and what is read from an image (EXIF, geocode, detection), the decode budget, the reaper,
and publishing to a Hugging Face dataset."""
