"""Map building: features -> pycolmap SfM -> landmarks -> compressed PRAM map."""
