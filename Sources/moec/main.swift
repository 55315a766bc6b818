print("moec")
