"""The binary and interchange files gtok writes and reads, one module per format: `.gtok` shards
(and gtars' single-record files), the universe index, the manifest."""
